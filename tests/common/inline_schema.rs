//! The service as gossip's schema source in a simulation, called on the gossip task
//! itself: the simulation has one thread, and a blocking-pool hop would race the paused
//! clock. Shared by the simulation tests (`#[path]`-included).

use std::sync::Arc;

use sibyl::cluster::SchemaSource;
use sibyl::service::Service;

/// See the module documentation.
pub struct InlineSchema(pub Arc<Service>);

impl SchemaSource for InlineSchema {
    fn schema_version(&self) -> u64 {
        self.0.schema_version()
    }
    fn export(&self) -> Vec<u8> {
        self.0.export()
    }
    fn import(&self, schema: &[u8]) -> Result<u64, String> {
        self.0.import(schema)
    }
    fn may_block(&self) -> bool {
        false
    }
}
