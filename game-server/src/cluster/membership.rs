//! Cluster membership: the registry where game servers find each other.
//!
//! Each game server announces itself (node id, P2P and mesh endpoints)
//! under a key of its own with a TTL, renewed every heartbeat, and reads
//! the list back to link its mesh to every peer. A node that dies stops
//! renewing and falls out of the registry when its key expires; whether a
//! peer is *alive* is decided faster, by mesh heartbeats (see
//! [`crate::cluster::mesh`]). No flag lists peers: a game server started later
//! announces itself and is found by the others on their next heartbeat.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gamemesh_proto::internal::NodeInfo;
use gamemesh_proto::Message;
use tokio::time::Instant;

use crate::session::redis::RedisStore;
use crate::session::StoreError;

/// Where game servers announce themselves.
#[async_trait]
pub trait NodeRegistry: Send + Sync + 'static {
    /// Announces (or renews) `me` for `ttl`.
    async fn announce(&self, me: &NodeInfo, ttl: Duration) -> Result<(), StoreError>;
    /// Every announced node, this one included.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError>;
    /// Removes `node_id` at once (graceful shutdown).
    async fn withdraw(&self, node_id: u64) -> Result<(), StoreError>;
}

/// The set of announced node ids. The `{cluster}` hash tag puts the set and
/// every node key in one Redis Cluster slot, so one MGET reads them all.
const NODES_KEY: &str = "gm:{cluster}:nodes";

fn node_key(node_id: u64) -> String {
    format!("gm:{{cluster}}:node:{node_id}")
}

#[async_trait]
impl NodeRegistry for RedisStore {
    async fn announce(&self, me: &NodeInfo, ttl: Duration) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(NODES_KEY).arg(me.node_id).ignore();
        pipe.cmd("SET")
            .arg(node_key(me.node_id))
            .arg(me.encode_to_vec())
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        self.query_pipe::<()>(&pipe).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let ids: Vec<u64> = self.query(redis::cmd("SMEMBERS").arg(NODES_KEY)).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = redis::cmd("MGET");
        for id in &ids {
            mget.arg(node_key(*id));
        }
        let values: Vec<Option<Vec<u8>>> = self.query(&mget).await?;
        let mut nodes = Vec::with_capacity(ids.len());
        let mut expired = Vec::new();
        for (id, v) in ids.into_iter().zip(values) {
            match v.and_then(|b| NodeInfo::decode(Bytes::from(b)).ok()) {
                Some(n) => nodes.push(n),
                None => expired.push(id),
            }
        }
        if !expired.is_empty() {
            // The node's key expired: it stopped renewing. Tidy the set.
            let mut srem = redis::cmd("SREM");
            srem.arg(NODES_KEY);
            for id in &expired {
                srem.arg(*id);
            }
            let _ = self.query::<i64>(&srem).await;
        }
        Ok(nodes)
    }

    async fn withdraw(&self, node_id: u64) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SREM").arg(NODES_KEY).arg(node_id).ignore();
        pipe.cmd("DEL").arg(node_key(node_id)).ignore();
        self.query_pipe::<()>(&pipe).await
    }
}

/// The in-memory registry (single process): same semantics, lazy expiry.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    /// node id -> (info, expiry).
    nodes: Mutex<HashMap<u64, (NodeInfo, Instant)>>,
}

#[async_trait]
impl NodeRegistry for MemoryRegistry {
    async fn announce(&self, me: &NodeInfo, ttl: Duration) -> Result<(), StoreError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.insert(me.node_id, (me.clone(), Instant::now() + ttl));
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        nodes.retain(|_, (_, exp)| *exp > now);
        Ok(nodes.values().map(|(n, _)| n.clone()).collect())
    }

    async fn withdraw(&self, node_id: u64) -> Result<(), StoreError> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&node_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> NodeInfo {
        NodeInfo {
            node_id: id,
            p2p_endpoint: format!("tcp://127.0.0.1:{}", 9000 + id),
            mesh_endpoint: format!("tcp://127.0.0.1:{}", 9100 + id),
        }
    }

    #[test]
    fn keys_that_are_used_together_share_a_redis_cluster_slot() {
        use gamemesh_node::redis_address::cluster_slot;
        // The registry reads the set and every node key in one MGET and
        // one pipeline: one slot for all of them.
        let registry = cluster_slot(NODES_KEY);
        for id in [1, 2, 77, u64::MAX] {
            assert_eq!(cluster_slot(&node_key(id)), registry, "node {id}");
        }
        // Every script touches one user's key only, and its slot is the
        // user's tag, so users spread over the cluster.
        use crate::session::redis::session_key;
        for user in [1u64, 42, 1_000_000] {
            assert_eq!(
                cluster_slot(&session_key(user)),
                cluster_slot(&format!("{{u:{user}}}")),
                "user {user}"
            );
        }
        assert_ne!(cluster_slot(&session_key(1)), cluster_slot(&session_key(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn nodes_expire_unless_renewed() {
        let r = MemoryRegistry::default();
        r.announce(&node(1), Duration::from_secs(3)).await.unwrap();
        r.announce(&node(2), Duration::from_secs(3)).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        r.announce(&node(1), Duration::from_secs(3)).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let ids: Vec<u64> = r.nodes().await.unwrap().iter().map(|n| n.node_id).collect();
        assert_eq!(ids, vec![1]);
        r.withdraw(1).await.unwrap();
        assert!(r.nodes().await.unwrap().is_empty());
    }
}
