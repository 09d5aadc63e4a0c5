//! Under ractor's `cluster` feature (corral's `cluster`), ractor implements
//! [`ractor::Message`] only for types that say how they cross nodes. The primary's own actor
//! messages never leave this process: they take the trait's defaults (not serializable), and
//! so stay out of every node's process groups. The default build needs none of this.

use crate::api::msg::ClusterMsg;
use crate::cluster::ClusterSignal;
use crate::process::ProcessEvent;
use crate::slot::{SlotMsg, SlotReport};

impl ractor::Message for ClusterSignal {}
impl ractor::Message for ClusterMsg {}
impl ractor::Message for SlotMsg {}
impl ractor::Message for SlotReport {}
impl ractor::Message for ProcessEvent {}
