//! Pure logic shared by every ringcache part: key hashing, the ring document (partition table with
//! member states), rebalancing and the migration plan. Nothing in this crate does I/O, so the
//! operator, the nodes and the client all agree on placement by construction.

mod doc;
mod hash;
mod plan;
mod rebalance;

pub use doc::{
    HASH_XXH3_64, MAX_INCARNATION_LEN, Member, MemberState, Pending, RING_DOC_VERSION, RingDoc,
    RingError, Table,
};
pub use hash::{DEFAULT_PARTITIONS, MAX_KEY_LEN, partition_of};
pub use plan::{PartitionMove, diff, moved_replicas};
pub use rebalance::{RebalanceError, rebalance};
