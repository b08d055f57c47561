//! Message types used by the tests: plain structs, enums, integers, byte vectors, Option, String.
#![allow(dead_code)]

use rkyv::{Archive, Deserialize, Serialize};
use wire_codec::WireMessage;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    pub round: u64,
    pub slot: u32,
    pub from: String,
    pub value: Vec<u8>,
    pub lease_ms: Option<u16>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Prepare { round: u64, node: u8 },
    Accept(Accept),
    Nack,
    Batch(Vec<Accept>),
}

impl WireMessage for Msg {
    fn check(&self) -> Result<(), String> {
        match self {
            Msg::Prepare { node, .. } if *node >= 5 => {
                Err(format!("node index {node} is not below the cluster size 5"))
            }
            _ => Ok(()),
        }
    }
}

pub fn samples() -> Vec<Msg> {
    vec![
        Msg::Prepare { round: 7, node: 2 },
        Msg::Nack,
        Msg::Accept(Accept {
            round: 0x0102_0304_0506_0708,
            slot: 42,
            from: "node_0".to_owned(),
            value: b"set k v".to_vec(),
            lease_ms: Some(1000),
        }),
        Msg::Batch(vec![
            Accept {
                round: 1,
                slot: 1,
                from: "a-rather-longer-node-name".to_owned(),
                value: vec![],
                lease_ms: None,
            },
            Accept {
                round: 2,
                slot: 2,
                from: String::new(),
                value: vec![0xff; 3],
                lease_ms: Some(0),
            },
        ]),
    ]
}
