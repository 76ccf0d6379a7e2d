//! Networks: create, list, get, delete, and the address records of one network.

use jdos_types::api::ListResponse;
use jdos_types::{IpAssignment, Network};
use reqwest::Method;

use crate::{collect_pages, seg, Client, ClientError, ListQuery};

impl Client {
    /// `POST /api/v1/networks`: creates a VLAN network. Admin or ops.
    pub async fn create_network(&self, net: &Network) -> Result<Network, ClientError> {
        self.send_json(Method::POST, "/api/v1/networks", net).await
    }

    /// `GET /api/v1/networks`: one page of networks.
    pub async fn list_networks(&self, q: &ListQuery) -> Result<ListResponse<Network>, ClientError> {
        self.get_json("/api/v1/networks", q).await
    }

    /// Every network, following `continue` tokens.
    pub async fn all_networks(&self) -> Result<Vec<Network>, ClientError> {
        collect_pages(|cont| {
            let q = ListQuery {
                limit: None,
                continue_token: cont,
            };
            async move { self.list_networks(&q).await }
        })
        .await
    }

    /// `GET /api/v1/networks/{name}`: one network.
    pub async fn get_network(&self, name: &str) -> Result<Network, ClientError> {
        self.get_json(&format!("/api/v1/networks/{}", seg(name)), &())
            .await
    }

    /// `DELETE /api/v1/networks/{name}`: deletes a network with no assigned
    /// address. Admin or ops.
    pub async fn delete_network(&self, name: &str) -> Result<(), ClientError> {
        self.send_discard(Method::DELETE, &format!("/api/v1/networks/{}", seg(name)))
            .await
    }

    /// `GET /api/v1/networks/{name}/ips`: one page of address records.
    pub async fn list_network_ips(
        &self,
        name: &str,
        q: &ListQuery,
    ) -> Result<ListResponse<IpAssignment>, ClientError> {
        self.get_json(&format!("/api/v1/networks/{}/ips", seg(name)), q)
            .await
    }

    /// Every address record of a network (assigned and quarantined), in
    /// address order.
    pub async fn all_network_ips(&self, name: &str) -> Result<Vec<IpAssignment>, ClientError> {
        let mut all = collect_pages(|cont| {
            let q = ListQuery {
                limit: None,
                continue_token: cont,
            };
            async move { self.list_network_ips(name, &q).await }
        })
        .await?;
        // Keys sort as text ("10.0.0.10" before "10.0.0.2"): sort as addresses.
        all.sort_by_key(|a| a.ip);
        Ok(all)
    }
}
