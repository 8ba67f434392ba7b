//! Which partitions this process holds completely: every acknowledged write to them is here.
//!
//! A process starts knowing nothing (DESIGN.md "Restarts are recoveries"): whatever a ring file
//! says about this member, its store may be empty or hold a stale snapshot. A partition becomes
//! complete here in one of two ways:
//!
//! - **vouched for**: the ring names this member `up` or `leaving` with *this* process's
//!   incarnation. The operator writes that only after this very process reported its pulls done,
//!   so it vouches for every partition the member owns in the current table;
//! - **pulled**: copied from a source complete for it, with the pull started after every writer
//!   routes writes of the partition here (the write fence), and continuously a write owner since.
//!
//! Continuity is what can break it. This process must have received every write to a partition
//! since it became complete, so:
//! - a ring in which this member is `down` makes everything incomplete (writers skip it);
//! - a partition it stops being a write owner of is incomplete (writers skip it for that one);
//! - a ring epoch that is not the next one after the last seen may hide either of those, so
//!   everything becomes incomplete unless the new ring vouches for this process.
//!
//! A partition can also be **lost**: no source complete for it is left (every other owner is down,
//! restarted or itself without a source). Lost partitions are reported, never counted as copied;
//! they count as finished so the member can serve again once the operator has recorded the loss.
//!
//! Pure state: no I/O. Reads on the request path take one atomic load per partition.

use crate::ring_view::RingView;
use parking_lot::Mutex;
use ringcache_ring::MemberState;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartState {
    Incomplete,
    Complete,
    Lost,
}

/// Where a partition's data stands, per partition of this process.
#[derive(Debug)]
pub struct Completeness {
    incarnation: String,
    inner: Mutex<Inner>,
    /// `state == Complete`, readable without the lock (the read path).
    complete: Box<[AtomicBool]>,
}

#[derive(Debug)]
struct Inner {
    state: Vec<PartState>,
    /// Epoch since which this member has continuously been a write owner of the partition
    /// (0: it is not one). A pull of the partition needs every writer past this epoch.
    owned_since: Vec<u64>,
    /// Epoch of the last ring applied (0: none yet).
    epoch: u64,
    /// Per partition, bumped whenever it becomes incomplete for a reason other than a pull, so
    /// a pull that started before does not mark it complete afterwards.
    generation: Vec<u64>,
    /// This member is a write owner at all (not `down`, named in the ring).
    takes_writes: bool,
    /// This member's state in the last ring (None: not a member).
    member_state: Option<MemberState>,
}

/// What the recovery task should pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    pub partition: u32,
    /// Epoch the write fence must reach before the pull may start.
    pub fence_epoch: u64,
    /// What [`Completeness::finish`] must be given for this pull.
    pub generation: u64,
}

/// Progress of the current epoch, as `/internal/v1/migration` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub epoch: u64,
    /// Partitions this member writes (current table and pending).
    pub owned: u64,
    pub complete: u64,
    pub lost: u64,
    /// Every partition this member writes is complete or lost.
    pub done: bool,
    /// Every partition of the current table this member owns is complete or lost, and it is not
    /// `down`: what `/readyz` reports.
    pub ready: bool,
}

impl Completeness {
    pub fn new(partitions: u32, incarnation: &str) -> Completeness {
        let n = partitions as usize;
        Completeness {
            incarnation: incarnation.to_string(),
            inner: Mutex::new(Inner {
                state: vec![PartState::Incomplete; n],
                owned_since: vec![0; n],
                epoch: 0,
                generation: vec![0; n],
                takes_writes: false,
                member_state: None,
            }),
            complete: (0..n).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// Whether partition `p` is complete here (the read path: lock-free).
    pub fn is_complete(&self, p: u32) -> bool {
        self.complete
            .get(p as usize)
            .is_some_and(|c| c.load(Ordering::Acquire))
    }

    /// Whether the ring vouches for this process: `up` or `leaving` with its incarnation (or a
    /// ring without incarnations, written before they existed).
    pub fn vouched(&self, view: &RingView) -> bool {
        view.self_member().is_some_and(|m| {
            matches!(m.state, MemberState::Up | MemberState::Leaving)
                && m.incarnation
                    .as_deref()
                    .is_none_or(|i| i == self.incarnation)
        })
    }

    /// Applies a newly installed ring (called under the ring's write lock, so the report and
    /// the ring never disagree about the epoch).
    pub fn on_ring(&self, view: &RingView) {
        let mut g = self.inner.lock();
        let doc = &view.doc;
        let me = view.self_index;
        let state = view.self_member().map(|m| m.state);
        let consecutive = g.epoch != 0 && doc.epoch == g.epoch + 1;
        let vouched = self.vouched(view);
        // Skipped epochs may hide a `down` or a commit that moved a partition away and back;
        // only what the new ring vouches for survives them. Being put into `recovering` is the
        // operator asking for every partition to be copied again (this member missed writes, or
        // restarted): nothing held before counts.
        let entering_recovery = state == Some(MemberState::Recovering)
            && g.member_state != Some(MemberState::Recovering);
        let forget_all = state.is_none_or(|s| s == MemberState::Down)
            || (!consecutive && !vouched)
            || entering_recovery;
        let forget_unvouched = !consecutive && vouched;
        g.takes_writes = state.is_some_and(MemberState::takes_writes);
        g.member_state = state;
        for p in 0..g.state.len() {
            let pu = p as u32;
            let in_table = me.is_some_and(|i| doc.owners(pu).contains(&i));
            let owner = g.takes_writes
                && (in_table || me.is_some_and(|i| doc.pending_owners(pu).contains(&i)));
            if forget_all || !owner || (forget_unvouched && !in_table) {
                if g.owned_since[p] != 0 || g.state[p] != PartState::Incomplete {
                    g.generation[p] += 1;
                }
                self.set(&mut g, p, PartState::Incomplete);
                g.owned_since[p] = 0;
            }
            if owner && g.owned_since[p] == 0 {
                g.owned_since[p] = doc.epoch;
            }
            if vouched && in_table {
                self.set(&mut g, p, PartState::Complete);
            }
        }
        g.epoch = doc.epoch;
    }

    fn set(&self, g: &mut Inner, p: usize, s: PartState) {
        g.state[p] = s;
        self.complete[p].store(s == PartState::Complete, Ordering::Release);
    }

    /// Partitions to pull now: written by this member and neither complete nor lost.
    pub fn needed(&self) -> Vec<Needed> {
        let g = self.inner.lock();
        (0..g.state.len())
            .filter(|&p| g.owned_since[p] != 0 && g.state[p] == PartState::Incomplete)
            .map(|p| Needed {
                partition: p as u32,
                fence_epoch: g.owned_since[p],
                generation: g.generation[p],
            })
            .collect()
    }

    /// Records the outcome of pulling `p` in a pull that started at `generation`. Returns false
    /// (and changes nothing) when continuity broke meanwhile.
    pub fn finish(&self, p: u32, generation: u64, outcome: PartState) -> bool {
        let mut g = self.inner.lock();
        let i = p as usize;
        if g.generation.get(i) != Some(&generation) || g.owned_since[i] == 0 {
            return false;
        }
        if g.state[i] == PartState::Incomplete {
            self.set(&mut g, i, outcome);
        }
        true
    }

    pub fn summary(&self, view: &RingView) -> Summary {
        let g = self.inner.lock();
        let mut s = Summary {
            epoch: g.epoch,
            ..Summary::default()
        };
        let me = view.self_index.filter(|_| view.epoch() == g.epoch);
        let mut table_done = true;
        for p in 0..g.state.len() {
            if g.owned_since[p] == 0 {
                continue;
            }
            s.owned += 1;
            match g.state[p] {
                PartState::Complete => s.complete += 1,
                PartState::Lost => s.lost += 1,
                PartState::Incomplete => {
                    if me.is_some_and(|i| view.doc.owners(p as u32).contains(&i)) {
                        table_done = false;
                    }
                }
            }
        }
        s.done = s.complete + s.lost == s.owned;
        s.ready = g.member_state.is_none_or(|st| st != MemberState::Down) && table_done;
        s
    }

    /// Partitions declared lost, in order.
    pub fn lost(&self) -> Vec<u32> {
        let g = self.inner.lock();
        (0..g.state.len())
            .filter(|&p| g.state[p] == PartState::Lost)
            .map(|p| p as u32)
            .collect()
    }

    pub fn state(&self, p: u32) -> Option<PartState> {
        self.inner.lock().state.get(p as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_ring::{Member, Pending, RingDoc};

    const ME: &str = "inc-me";

    fn doc(epoch: u64, states: [MemberState; 3], incarnation: Option<&str>) -> RingDoc {
        let m = |i: usize, state| Member {
            id: format!("n{i}"),
            addr: format!("127.0.0.{}:7070", i + 2),
            state,
            incarnation: if i == 0 {
                incarnation.map(str::to_string)
            } else {
                Some(format!("inc-{i}"))
            },
        };
        RingDoc {
            version: 1,
            epoch,
            partitions: 4,
            replication_factor: 2,
            hash: "xxh3_64".into(),
            members: vec![m(0, states[0]), m(1, states[1]), m(2, states[2])],
            // n0 owns 0, 1, 3; n1 owns 0, 2, 3; n2 owns 1, 2.
            table: vec![vec![0, 1], vec![2, 0], vec![1, 2], vec![0, 1]],
            pending: None,
        }
    }

    use MemberState::*;

    fn view(d: RingDoc) -> RingView {
        RingView::new(d, "n0")
    }

    fn gen_of(c: &Completeness, p: u32) -> u64 {
        c.needed()
            .into_iter()
            .find(|n| n.partition == p)
            .map(|n| n.generation)
            .unwrap()
    }

    fn complete(c: &Completeness) -> Vec<u32> {
        (0..4).filter(|&p| c.is_complete(p)).collect()
    }

    #[test]
    fn a_ring_vouching_for_this_incarnation_makes_its_table_partitions_complete() {
        let c = Completeness::new(4, ME);
        let v = view(doc(5, [Up, Up, Up], Some(ME)));
        c.on_ring(&v);
        assert_eq!(complete(&c), vec![0, 1, 3]);
        let s = c.summary(&v);
        assert!(s.done && s.ready);
        assert_eq!((s.owned, s.complete), (3, 3));
    }

    #[test]
    fn a_restarted_process_trusts_no_up_state_recorded_for_an_earlier_incarnation() {
        let c = Completeness::new(4, ME);
        let v = view(doc(5, [Up, Up, Up], Some("inc-before-restart")));
        c.on_ring(&v);
        assert!(complete(&c).is_empty());
        let s = c.summary(&v);
        assert!(!s.ready && !s.done);
        let needed = c.needed();
        assert_eq!(
            needed.iter().map(|n| n.partition).collect::<Vec<_>>(),
            vec![0, 1, 3]
        );
        assert!(needed.iter().all(|n| n.fence_epoch == 5));
    }

    #[test]
    fn pulled_partitions_stay_complete_across_consecutive_epochs() {
        let c = Completeness::new(4, ME);
        c.on_ring(&view(doc(5, [Recovering, Up, Up], Some(ME))));
        let g = gen_of(&c, 0);
        assert!(c.finish(0, g, PartState::Complete));
        assert!(c.finish(1, gen_of(&c, 1), PartState::Lost));
        // Another member's state changes: the next epoch keeps what was pulled.
        let v = view(doc(6, [Recovering, Up, Down], Some(ME)));
        c.on_ring(&v);
        assert_eq!(complete(&c), vec![0]);
        assert_eq!(c.lost(), vec![1]);
        assert!(c.finish(3, gen_of(&c, 3), PartState::Complete));
        let s = c.summary(&v);
        assert!(s.done && s.ready, "{s:?}");
        assert_eq!((s.complete, s.lost), (2, 1));
    }

    #[test]
    fn being_marked_down_or_skipping_an_epoch_forgets_everything_pulled() {
        let c = Completeness::new(4, ME);
        c.on_ring(&view(doc(5, [Recovering, Up, Up], Some(ME))));
        assert!(c.finish(0, gen_of(&c, 0), PartState::Complete));
        let g = gen_of(&c, 1);
        c.on_ring(&view(doc(6, [Down, Up, Up], Some(ME))));
        assert!(complete(&c).is_empty());
        assert!(!c.summary(&view(doc(6, [Down, Up, Up], Some(ME)))).ready);
        // A pull that began before cannot complete its partition afterwards.
        assert!(!c.finish(1, g, PartState::Complete));

        let c = Completeness::new(4, ME);
        c.on_ring(&view(doc(5, [Recovering, Up, Up], Some(ME))));
        assert!(c.finish(0, gen_of(&c, 0), PartState::Complete));
        c.on_ring(&view(doc(8, [Recovering, Up, Up], Some(ME))));
        assert!(complete(&c).is_empty(), "epochs 6 and 7 were not seen");
        // …unless the skipped-to ring vouches for this process.
        c.on_ring(&view(doc(11, [Up, Up, Up], Some(ME))));
        assert_eq!(complete(&c), vec![0, 1, 3]);
    }

    #[test]
    fn a_partition_no_longer_written_here_is_incomplete_and_a_gain_needs_a_fresh_fence() {
        let c = Completeness::new(4, ME);
        c.on_ring(&view(doc(5, [Up, Up, Up], Some(ME))));
        let mut d = doc(6, [Up, Up, Up], Some(ME));
        // Pending: n0 gains 2 and loses 1.
        d.pending = Some(Pending {
            table: vec![vec![0, 1], vec![2, 1], vec![0, 2], vec![0, 1]],
        });
        let v = view(d.clone());
        c.on_ring(&v);
        assert_eq!(complete(&c), vec![0, 1, 3], "1 is still written here");
        let needed = c.needed();
        assert_eq!(
            needed
                .iter()
                .map(|n| (n.partition, n.fence_epoch))
                .collect::<Vec<_>>(),
            vec![(2, 6)]
        );
        assert!(!c.summary(&v).done);
        assert!(c.summary(&v).ready, "pending gains do not affect readiness");
        // Commit: 1 is gone, 2 stays complete once pulled.
        assert!(c.finish(2, gen_of(&c, 2), PartState::Complete));
        let mut committed = doc(7, [Up, Up, Up], Some(ME));
        committed.table = d.pending.unwrap().table;
        c.on_ring(&view(committed));
        assert_eq!(complete(&c), vec![0, 2, 3]);
        assert_eq!(c.state(1), Some(PartState::Incomplete));
    }

    #[test]
    fn being_put_into_recovering_forgets_what_was_held_even_without_a_restart() {
        // An up member reported stale (it missed writes it acknowledged nothing about) is moved
        // to recovering with its incarnation unchanged: it must copy everything again.
        let c = Completeness::new(4, ME);
        c.on_ring(&view(doc(5, [Up, Up, Up], Some(ME))));
        assert_eq!(complete(&c), vec![0, 1, 3]);
        let v = view(doc(6, [Recovering, Up, Up], Some(ME)));
        c.on_ring(&v);
        assert!(complete(&c).is_empty());
        assert!(!c.summary(&v).done);
        // Progress made while recovering survives the next epochs of the same recovery.
        assert!(c.finish(0, gen_of(&c, 0), PartState::Complete));
        c.on_ring(&view(doc(7, [Recovering, Down, Up], Some(ME))));
        assert_eq!(complete(&c), vec![0]);
    }

    #[test]
    fn rings_without_incarnations_are_trusted_as_before() {
        let c = Completeness::new(4, ME);
        c.on_ring(&view(doc(2, [Up, Up, Up], None)));
        assert_eq!(complete(&c), vec![0, 1, 3]);
    }

    #[test]
    fn a_node_outside_the_ring_owns_nothing_and_is_ready() {
        let c = Completeness::new(4, ME);
        let v = RingView::new(doc(3, [Up, Up, Up], Some(ME)), "stranger");
        c.on_ring(&v);
        let s = c.summary(&v);
        assert!(s.ready && s.done && s.owned == 0);
    }
}
