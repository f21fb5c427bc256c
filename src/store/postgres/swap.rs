//! Compare-and-swap of a flow execution between replicas: one `UPDATE … WHERE state = $current`,
//! so of several gateways that loaded the same state exactly one moves it on.

use super::{db, execute, storable, PgStore};
use crate::store::StoreResult;

impl PgStore {
    /// [`crate::store::Store::swap_execution`]: one conditional `UPDATE`. The row lock it takes
    /// makes a second writer with the same `current` wait, then re-check the `WHERE` against
    /// the committed row (read committed), which no longer matches: it updates nothing.
    pub(super) fn swap_execution_row(
        &self,
        id: &str,
        current: &[u8],
        new: &[u8],
        expires: i64,
    ) -> StoreResult<bool> {
        if !storable(id) {
            return Ok(false);
        }
        let (id, current, new) = (id.to_string(), current.to_vec(), new.to_vec());
        self.with("swap execution", move |c| async move {
            let n = execute(
                &c,
                "UPDATE portcullis_executions SET state = $3, expires = $4 \
                 WHERE id = $1 AND state = $2",
                &[&id, &current, &new, &expires],
            )
            .await
            .map_err(db("swap execution"))?;
            Ok(n == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_server::server;
    use super::PgStore;
    use crate::store::Store;
    use std::sync::{Arc, Barrier};

    #[test]
    fn two_replicas_saving_one_loaded_execution_exactly_one_wins() {
        let config = server().fresh_database();
        let a = Arc::new(PgStore::connect(&config).expect("replica a"));
        let b = Arc::new(PgStore::connect(&config).expect("replica b"));
        for round in 0..20 {
            let id = format!("x{round}");
            a.put_execution(&id, 1_000, b"loaded").unwrap();
            let barrier = Arc::new(Barrier::new(8));
            let joins: Vec<_> = (0..8)
                .map(|i| {
                    let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                    let (barrier, id) = (barrier.clone(), id.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let new = format!("saved by {i}");
                        store
                            .swap_execution(&id, b"loaded", new.as_bytes(), 1_000)
                            .unwrap()
                            .then_some(new)
                    })
                })
                .collect();
            let winners: Vec<String> = joins
                .into_iter()
                .filter_map(|j| j.join().expect("thread"))
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
            let stored = b.execution(&id, 0).unwrap();
            assert_eq!(stored.as_deref(), Some(winners[0].as_bytes()));
        }
    }

    #[test]
    fn a_late_save_on_one_replica_does_not_resurrect_what_another_removed() {
        let config = server().fresh_database();
        let a = PgStore::connect(&config).expect("replica a");
        let b = PgStore::connect(&config).expect("replica b");
        a.put_execution("x", 1_000, b"loaded").unwrap();
        a.remove_execution("x").unwrap();
        assert!(!b.swap_execution("x", b"loaded", b"late", 1_000).unwrap());
        assert_eq!(a.execution("x", 0).unwrap(), None);
    }
}
