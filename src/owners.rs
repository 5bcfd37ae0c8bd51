//! Who owns each connection registered with the worker's poller, and the
//! tokens its events carry. Connections are registered once, edge-triggered
//! (no `epoll_ctl` per request), so the kernel no longer hands a ready
//! connection to exactly one core: an event can come while a core is
//! serving the connection, and can still be on its way (fetched by one
//! `epoll_wait`, queued for the next `wait`) after the connection was
//! closed and its descriptor reused. This module decides, for every event
//! and every park, who holds the connection. No I/O and no epoll here
//! (the poller does both); no parsing, no Python.
//!
//! # The state machine
//!
//! A registered connection has a slot, indexed by its descriptor (unique
//! among open connections), holding one atomic word: a generation and one
//! of three states. The generation is new each time a connection takes
//! the slot (its first park), and every event token carries the
//! descriptor and the generation it was registered with.
//!
//! ```text
//!            register (first park; epoll ADD reports what is there already)
//!   (closed) ─────────────────────────────▶ PARKED(g) ── the box is in the slot
//!                                              │   ▲
//!                      event g: take the box   │   │ park: CAS OWNED(g)→PARKED(g),
//!                                              ▼   │ only if drained (see below)
//!                                           OWNED(g) ── one core holds the box
//!                                              │   ▲
//!                       event g: CAS to READY  │   │ park finds READY: no park;
//!                                              ▼   │ back to OWNED, caller reads
//!                                           READY(g)
//! ```
//!
//! - An event for generation g: PARKED(g) → OWNED(g) hands the box to the
//!   core that handled the event (exactly one: a compare-and-swap);
//!   OWNED(g) → READY(g) records that an edge came while a core owns the
//!   connection; READY(g) stays. An event whose generation is not the
//!   slot's is stale (its connection was closed, the descriptor maybe
//!   reused) and is dropped without touching anything: the token is not an
//!   owning pointer, so nothing is freed or read through it.
//! - Parking: the owner puts the box in the slot, then OWNED(g) →
//!   PARKED(g). If the swap fails the state is READY(g): an edge came while
//!   it owned the connection, so it must not park (that edge will not come
//!   again); it takes the box back, sets OWNED(g) and reads again.
//! - Drained: an edge-triggered registration reports new bytes, not bytes
//!   already there. A quiet park is only right if the owner found the
//!   socket empty (a short read or EAGAIN; a short read of a stream socket
//!   means the queue was empty, as nginx assumes with EPOLLET) after the
//!   event that gave it the connection: then anything that came since is an
//!   edge after that moment, which either is in the kernel still (the next
//!   `epoll_wait` reports it), or was fetched (its handler found OWNED and
//!   set READY, or found PARKED and takes the connection). Not drained:
//!   read again rather than park.
//! - Closing: the owner drops the box; the slot keeps OWNED(g) or READY(g)
//!   of a generation nobody will register again. Late events for it are
//!   absorbed. A connection with the same descriptor later takes the slot
//!   with generation g+1 (its events are g+1, the late ones g: dropped).
//!
//! Never spins: every step but a park is taken for an event, and every
//! "read again" is owed to an edge or to a read that has not yet found the
//! socket empty (each read either finds it empty or takes bytes).

use std::os::fd::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::conn::Conn;

/// Slots per chunk, and chunks: descriptors up to 4M (Linux's default
/// ceiling, fs.nr_open, is 1M). Chunks are made when a descriptor in them
/// is first registered and kept for the worker's life.
const CHUNK: usize = 4096;
const CHUNKS: usize = 1024;

const OWNED: u64 = 0;
const READY: u64 = 1;
const PARKED: u64 = 2;
const TAG: u64 = 3;

struct Slot {
    /// `generation << 2 | state`.
    state: AtomicU64,
    /// The parked connection (null unless PARKED, or being parked).
    conn: AtomicPtr<Conn>,
}

/// What the owner of a connection may do after trying to park it.
pub enum Park {
    /// Parked: the poller has it (its events give it to one core).
    Parked,
    /// Not parked: bytes may have come that no later event reports. The
    /// caller still owns it and must read before parking again.
    ReadAgain(Box<Conn>),
}

pub struct Owners {
    chunks: Box<[AtomicPtr<Slot>]>,
}

impl Default for Owners {
    fn default() -> Self {
        Owners {
            chunks: (0..CHUNKS)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
        }
    }
}

/// The token of generation `generation` of descriptor `fd`: even (the
/// poller's other tokens are odd) and never below 2^32 (generations start
/// at 1).
pub fn token(fd: RawFd, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(fd as u32) << 1
}

fn untoken(token: u64) -> (RawFd, u64) {
    (((token as u32) >> 1) as RawFd, token >> 32)
}

impl Owners {
    fn slot(&self, fd: RawFd) -> Option<&Slot> {
        let fd = usize::try_from(fd).ok()?;
        let chunk = self.chunks.get(fd / CHUNK)?.load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a chunk is CHUNK slots, made in `slot_or_make` and freed
        // only in drop (with `&mut self`).
        Some(unsafe { &*chunk.add(fd % CHUNK) })
    }

    fn slot_or_make(&self, fd: RawFd) -> Option<&Slot> {
        if let Some(s) = self.slot(fd) {
            return Some(s);
        }
        let idx = usize::try_from(fd).ok()?;
        let cell = self.chunks.get(idx / CHUNK)?;
        let fresh: Box<[Slot]> = (0..CHUNK)
            .map(|_| Slot {
                state: AtomicU64::new(OWNED),
                conn: AtomicPtr::new(ptr::null_mut()),
            })
            .collect();
        let fresh = Box::into_raw(fresh) as *mut Slot;
        if let Err(_other) =
            cell.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // Another core made it first: use theirs.
            // SAFETY: ours was never shared.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, CHUNK)) });
        }
        self.slot(fd)
    }

    /// Give `conn` (never registered) a slot, parked, and the token its
    /// events must carry. Err (the connection back) when its descriptor is
    /// out of range.
    pub fn register(&self, mut conn: Box<Conn>) -> Result<u64, Box<Conn>> {
        let fd = conn.fd();
        let Some(slot) = self.slot_or_make(fd) else {
            return Err(conn);
        };
        // The slot's last generation belongs to a closed connection (this
        // descriptor was open in no other): a new one, never 0.
        let last = slot.state.load(Ordering::Acquire);
        debug_assert_ne!(last & TAG, PARKED, "a parked connection has this fd");
        let generation = match (last >> 2) as u32 {
            u32::MAX => 1,
            g => g + 1,
        };
        conn.generation = generation;
        slot.conn.store(Box::into_raw(conn), Ordering::Relaxed);
        // Release: whoever takes it (an event) sees the box. A late event
        // of the old generation fails its compare-and-swap from here on.
        slot.state
            .store(u64::from(generation) << 2 | PARKED, Ordering::Release);
        Ok(token(fd, generation))
    }

    /// Take back a connection just registered whose registration with the
    /// kernel failed (no event can name it).
    pub fn unregister(&self, fd: RawFd, generation: u32) -> Option<Box<Conn>> {
        let slot = self.slot(fd)?;
        let parked = u64::from(generation) << 2 | PARKED;
        let owned = u64::from(generation) << 2 | OWNED;
        slot.state
            .compare_exchange(parked, owned, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let conn = slot.conn.swap(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: put there by `register` from Box::into_raw, and taken by
        // whoever wins the swap out of PARKED (us).
        Some(unsafe { Box::from_raw(conn) })
    }

    /// Park a registered connection its caller owns (see the module doc).
    pub fn park(&self, mut conn: Box<Conn>) -> Park {
        let fd = conn.fd();
        let g = u64::from(conn.generation);
        let Some(slot) = self.slot(fd) else {
            return Park::ReadAgain(conn); // unreachable: registered
        };
        let owned = g << 2 | OWNED;
        if !conn.drained {
            // Whatever an edge said is still to be read: read, then park.
            slot.state.store(owned, Ordering::Release);
            return Park::ReadAgain(conn);
        }
        let raw = Box::into_raw(conn);
        slot.conn.store(raw, Ordering::Relaxed);
        match slot.state.compare_exchange(
            owned,
            g << 2 | PARKED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Park::Parked,
            Err(_ready) => {
                // READY(g): an edge came while we owned it. Still ours.
                slot.conn.store(ptr::null_mut(), Ordering::Relaxed);
                slot.state.store(owned, Ordering::Release);
                // SAFETY: from Box::into_raw above; never PARKED, so no
                // event could take it.
                conn = unsafe { Box::from_raw(raw) };
                conn.drained = false;
                Park::ReadAgain(conn)
            }
        }
    }

    /// Park a registered connection whatever came meanwhile, for an owner
    /// that cannot read it: the caller must then hand its token out once
    /// more, as if the kernel had reported it (`Poller::park_and_report`).
    /// None (and it is closed) only if it has no slot, which a
    /// registered connection always has.
    pub fn park_anyway(&self, conn: Box<Conn>) -> Option<u64> {
        let fd = conn.fd();
        let generation = conn.generation;
        let slot = self.slot(fd)?;
        slot.conn.store(Box::into_raw(conn), Ordering::Relaxed);
        slot.state
            .store(u64::from(generation) << 2 | PARKED, Ordering::Release);
        Some(token(fd, generation))
    }

    /// An event with `token`: the connection if it was parked (the caller
    /// owns it now), None if a core owns it (recorded: it reads again before
    /// parking) or the token is stale.
    pub fn event(&self, token: u64) -> Option<Box<Conn>> {
        let (fd, g) = untoken(token);
        let slot = self.slot(fd)?;
        let mut cur = slot.state.load(Ordering::Acquire);
        loop {
            if cur >> 2 != g {
                return None; // stale: a closed connection's
            }
            let next = match cur & TAG {
                PARKED => g << 2 | OWNED,
                OWNED => g << 2 | READY,
                _ => return None, // READY already
            };
            match slot
                .state
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if cur & TAG == PARKED => {
                    let conn = slot.conn.swap(ptr::null_mut(), Ordering::Relaxed);
                    // SAFETY: PARKED means the slot holds a box from
                    // Box::into_raw (register, park), and only the winner of
                    // the swap out of PARKED takes it.
                    let mut conn = unsafe { Box::from_raw(conn) };
                    conn.drained = false;
                    return Some(conn);
                }
                Ok(_) => return None,
                Err(now) => cur = now,
            }
        }
    }
}

impl Drop for Owners {
    /// The parked connections are closed (the others belong to their cores).
    fn drop(&mut self) {
        for cell in self.chunks.iter() {
            let chunk = cell.load(Ordering::Acquire);
            if chunk.is_null() {
                continue;
            }
            // SAFETY: made in `slot_or_make`; nobody else holds `self`.
            let chunk = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(chunk, CHUNK)) };
            for slot in chunk.iter() {
                let conn = slot.conn.load(Ordering::Relaxed);
                if slot.state.load(Ordering::Acquire) & TAG == PARKED && !conn.is_null() {
                    // SAFETY: PARKED: the slot owns this box.
                    drop(unsafe { Box::from_raw(conn) });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicU64;

    fn conn() -> (Box<Conn>, UnixStream) {
        Conn::unix_pair(Box::leak(Box::new(AtomicU64::new(0))), 0)
    }

    fn parked(p: Park) -> bool {
        matches!(p, Park::Parked)
    }

    #[test]
    fn an_event_gives_a_parked_connection_to_exactly_one_taker() {
        let o = Owners::default();
        let (c, _peer) = conn();
        let token = o.register(c).unwrap_or_else(|_| panic!("in range"));
        let mut taken = o.event(token).expect("parked: handed out");
        assert!(!taken.drained, "an edge to read");
        assert!(o.event(token).is_none(), "owned: nobody else gets it");
        assert!(o.event(token).is_none(), "still owned");
        taken.drained = true;
        // The two events above came while it was owned: read again.
        let Park::ReadAgain(mut taken) = o.park(taken) else {
            panic!("parked over an edge that came while owned");
        };
        assert!(!taken.drained);
        taken.drained = true;
        assert!(parked(o.park(taken)), "nothing came since: parked");
        assert!(o.event(token).is_some(), "and an event hands it out again");
    }

    #[test]
    fn an_owner_that_has_not_found_the_socket_empty_reads_again() {
        let o = Owners::default();
        let (c, _peer) = conn();
        let token = o.register(c).unwrap_or_else(|_| panic!("in range"));
        let taken = o.event(token).unwrap();
        let Park::ReadAgain(mut taken) = o.park(taken) else {
            panic!("parked without a read that found the socket empty");
        };
        taken.drained = true;
        assert!(parked(o.park(taken)));
    }

    #[test]
    fn a_park_racing_an_event_leaves_the_connection_with_one_of_them() {
        // Many rounds of: the owner parks while another thread's event
        // comes. Either the park wins (the event takes the connection) or
        // the event does (READY: the owner reads again); never both, never
        // neither.
        let o = Owners::default();
        let (c, _peer) = conn();
        let token = o.register(c).unwrap_or_else(|_| panic!("in range"));
        let mut c = o.event(token).unwrap();
        for round in 0..2000 {
            c.drained = true;
            let (park, taken) = std::thread::scope(|s| {
                let t = s.spawn(|| o.event(token));
                let park = o.park(c);
                (park, t.join().unwrap())
            });
            c = match (park, taken) {
                (Park::Parked, Some(c)) => c,
                (Park::ReadAgain(c), None) => c,
                // An event before the park makes it READY (no park), one
                // after finds it parked and takes it.
                (Park::Parked, None) => panic!("round {round}: parked over an edge"),
                (Park::ReadAgain(_), Some(_)) => panic!("round {round}: two owners"),
            };
        }
    }

    #[test]
    fn a_late_event_of_a_closed_connection_touches_nothing() {
        let o = Owners::default();
        let (first, _peer) = conn();
        let old = o.register(first).unwrap_or_else(|_| panic!("in range"));
        // Its owner closes it while its event is still on its way; a new
        // connection gets the same descriptor. (Registering the same box
        // again stands for that: the slot only knows the descriptor, and
        // this keeps other tests' sockets out of the way.)
        let mut reused = o.event(old).unwrap();
        reused.generation = 0;
        let new = o.register(reused).unwrap_or_else(|_| panic!("in range"));
        assert_ne!(new, old);
        assert!(o.event(old).is_none(), "the late event is dropped");
        let mut c = o.event(new).expect("still parked for its own events");
        c.drained = true;
        assert!(o.event(old).is_none());
        assert!(
            parked(o.park(c)),
            "the late event did not mark the new connection ready"
        );
    }

    #[test]
    fn tokens_are_even_and_above_the_fixed_ones() {
        let t = token(5, 1);
        assert_eq!(t & 1, 0);
        assert!(t > 3);
        assert_eq!(untoken(t), (5, 1));
        assert_eq!(
            untoken(token(4_000_000, u32::MAX)),
            (4_000_000, u64::from(u32::MAX))
        );
    }

    #[test]
    fn parked_connections_are_closed_with_the_table() {
        let o = Owners::default();
        let (c, mut peer) = conn();
        o.register(c).unwrap_or_else(|_| panic!("in range"));
        drop(o);
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut peer, &mut buf).unwrap(), 0);
    }
}
