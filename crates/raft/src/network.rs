//! The Raft transport seam. A single node has no peers, so every RPC is unreachable; the
//! cluster issue replaces this with a gRPC transport.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use crate::{NodeId, TypeConfig};

#[derive(Clone, Copy, Debug, Default)]
pub struct LocalNetwork;

#[derive(Debug, thiserror::Error)]
#[error("node {0} is not reachable: this node has no Raft transport (single-node)")]
struct NoTransport(NodeId);

impl RaftNetworkFactory<TypeConfig> for LocalNetwork {
    type Network = LocalClient;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> LocalClient {
        LocalClient { target }
    }
}

pub struct LocalClient {
    target: NodeId,
}

impl LocalClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        let _ = NetworkError::new(&NoTransport(self.target));
        RPCError::Unreachable(Unreachable::new(&NoTransport(self.target)))
    }
}

impl RaftNetwork<TypeConfig> for LocalClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
