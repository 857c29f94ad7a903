//! Which connections the server takes (sans-I/O, like the connection core).
//!
//! Without auth, every connection counts against `max_connections`; one more is refused.
//!
//! With auth, a new connection is *unauthenticated* and counts only against
//! `max_unauthenticated_connections`. When that pool is full, the oldest unauthenticated
//! connection is closed to make room (a legitimate client sends AUTH at once, an attacker's
//! silent socket is the oldest), so unauthenticated sockets can never take the slots tenants
//! need. On AUTH the connection moves to the `max_connections` pool; if that is full, the AUTH
//! is refused with `-ERR max connections reached` and the connection closed.

use std::collections::{HashSet, VecDeque};

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Accept,
    /// Accept, and close this older unauthenticated connection to make room.
    AcceptEvicting(u64),
    Reject,
}

#[derive(Debug)]
pub(crate) struct Admission {
    auth_required: bool,
    max_authenticated: usize,
    max_unauthenticated: usize,
    authenticated: HashSet<u64>,
    /// Oldest first.
    unauthenticated: VecDeque<u64>,
}

impl Admission {
    pub fn new(auth_required: bool, max_authenticated: usize, max_unauthenticated: usize) -> Admission {
        Admission {
            auth_required,
            max_authenticated,
            max_unauthenticated: max_unauthenticated.max(1),
            authenticated: HashSet::new(),
            unauthenticated: VecDeque::new(),
        }
    }

    pub fn admit(&mut self, id: u64) -> Admit {
        if !self.auth_required {
            if self.authenticated.len() >= self.max_authenticated {
                return Admit::Reject;
            }
            self.authenticated.insert(id);
            return Admit::Accept;
        }
        let evicted = if self.unauthenticated.len() >= self.max_unauthenticated {
            self.unauthenticated.pop_front()
        } else {
            None
        };
        self.unauthenticated.push_back(id);
        match evicted {
            Some(old) => Admit::AcceptEvicting(old),
            None => Admit::Accept,
        }
    }

    /// The connection authenticated: true if it may stay (a `max_connections` slot was free).
    pub fn authenticate(&mut self, id: u64) -> bool {
        if self.authenticated.contains(&id) {
            return true;
        }
        if self.authenticated.len() >= self.max_authenticated {
            return false;
        }
        self.unauthenticated.retain(|&u| u != id);
        self.authenticated.insert(id);
        true
    }

    pub fn remove(&mut self, id: u64) {
        if !self.authenticated.remove(&id) {
            self.unauthenticated.retain(|&u| u != id);
        }
    }

    pub fn unauthenticated(&self) -> usize {
        self.unauthenticated.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_daemon_counts_every_connection() {
        let mut a = Admission::new(false, 2, 8);
        assert_eq!(a.admit(1), Admit::Accept);
        assert_eq!(a.admit(2), Admit::Accept);
        assert_eq!(a.admit(3), Admit::Reject);
        a.remove(1);
        assert_eq!(a.admit(4), Admit::Accept);
    }

    #[test]
    fn unauthenticated_connections_have_their_own_pool_and_the_oldest_makes_room() {
        let mut a = Admission::new(true, 2, 3);
        for id in 1..=3 {
            assert_eq!(a.admit(id), Admit::Accept);
        }
        assert_eq!(a.admit(4), Admit::AcceptEvicting(1));
        assert_eq!(a.unauthenticated(), 3);
        // Authenticated connections leave the pool and use max_connections.
        assert!(a.authenticate(4));
        assert!(a.authenticate(3));
        assert_eq!(a.unauthenticated(), 1);
        assert!(!a.authenticate(2), "max_connections reached");
        // A flood of new sockets never touches authenticated ones.
        for id in 10..100 {
            let admitted = a.admit(id);
            assert!(!matches!(admitted, Admit::AcceptEvicting(3 | 4)), "{admitted:?}");
        }
        assert_eq!(a.unauthenticated(), 3);
        a.remove(4);
        assert!(a.authenticate(99));
    }
}
