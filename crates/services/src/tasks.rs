//! Tasks for grid workers and their lifecycle.
//!
//! A task is opened once per service and resident, ever: its id is `T` and a number in the
//! order tasks were opened, never derived from the resident's id (which is personal). Its
//! states: `open` → `accepted` → `done`; `refused` (with a reason) from open or accepted;
//! `escalated` to the community office when its deadline passes while open or accepted, and
//! from there `done` or `refused`. Each state is reached at most once, so an event's id is
//! the task's id and the state, and storing one twice is a no-op.

use std::collections::{BTreeSet, HashMap};

use citybrain_core::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Accepted,
    Done,
    Refused,
    Escalated,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Accepted => "accepted",
            State::Done => "done",
            State::Refused => "refused",
            State::Escalated => "escalated",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            State::Open,
            State::Accepted,
            State::Done,
            State::Refused,
            State::Escalated,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// Whether the task still waits on someone (its deadline still counts).
    pub fn is_pending(self) -> bool {
        matches!(self, State::Open | State::Accepted)
    }

    /// Whether the state ends the task.
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Refused)
    }

    /// The states a person may move a task to from this one (escalation is citybrain's).
    pub fn next_by_hand(self) -> &'static [State] {
        match self {
            State::Open => &[State::Accepted, State::Refused],
            State::Accepted => &[State::Done, State::Refused],
            State::Escalated => &[State::Done, State::Refused],
            State::Done | State::Refused => &[],
        }
    }
}

/// What a task is, as far as its lifecycle needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub id: String,
    pub service: String,
    pub resident_id: String,
    pub grid: String,
    pub due_at: Timestamp,
    pub state: State,
}

/// A move refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoveError {
    #[error("no task {0}")]
    NotFound(String),
    #[error("task {id} is {from}; from there it can go to {allowed} (not {to})")]
    NotAllowed {
        id: String,
        from: &'static str,
        to: &'static str,
        allowed: String,
    },
}

/// Every task, by id and by (service, resident), with the deadlines still running.
#[derive(Debug, Clone, Default)]
pub struct TaskBook {
    tasks: HashMap<String, TaskInfo>,
    by_pair: HashMap<(String, String), String>,
    next_number: u64,
    due: BTreeSet<(Timestamp, String)>,
}

impl TaskBook {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
    pub fn get(&self, id: &str) -> Option<&TaskInfo> {
        self.tasks.get(id)
    }
    pub fn exists(&self, service: &str, resident_id: &str) -> bool {
        self.by_pair
            .contains_key(&(service.to_string(), resident_id.to_string()))
    }
    pub fn tasks(&self) -> impl Iterator<Item = &TaskInfo> {
        self.tasks.values()
    }

    /// Puts back a stored task (at start); its number keeps later ids apart.
    pub fn restore(&mut self, task: TaskInfo) {
        if let Some(n) = task
            .id
            .strip_prefix('T')
            .and_then(|n| n.parse::<u64>().ok())
        {
            self.next_number = self.next_number.max(n + 1);
        }
        self.by_pair.insert(
            (task.service.clone(), task.resident_id.clone()),
            task.id.clone(),
        );
        if task.state.is_pending() {
            self.due.insert((task.due_at, task.id.clone()));
        }
        self.tasks.insert(task.id.clone(), task);
    }

    /// Puts back a stored state change (at start, in any order: the furthest state holds).
    pub fn restore_state(&mut self, id: &str, state: State) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let rank = |s: State| match s {
            State::Open => 0,
            State::Accepted => 1,
            State::Escalated => 2,
            State::Done | State::Refused => 3,
        };
        if rank(state) > rank(task.state) {
            if !state.is_pending() {
                self.due.remove(&(task.due_at, task.id.clone()));
            }
            task.state = state;
        }
    }

    /// Opens the task for `service` and `resident_id` unless one was ever opened: its id.
    pub fn open(
        &mut self,
        service: &str,
        resident_id: &str,
        grid: &str,
        due_at: Timestamp,
    ) -> Option<String> {
        if self.exists(service, resident_id) {
            return None;
        }
        let id = format!("T{:07}", self.next_number);
        self.restore(TaskInfo {
            id: id.clone(),
            service: service.to_string(),
            resident_id: resident_id.to_string(),
            grid: grid.to_string(),
            due_at,
            state: State::Open,
        });
        Some(id)
    }

    /// Forgets a task just opened whose row could not be stored (so the next decision
    /// opens it again).
    pub fn forget(&mut self, id: &str) {
        if let Some(t) = self.tasks.remove(id) {
            self.by_pair.remove(&(t.service, t.resident_id));
            self.due.remove(&(t.due_at, t.id));
        }
    }

    /// Checks a move by hand: the state it reaches.
    pub fn check_move(&self, id: &str, to: State) -> Result<&TaskInfo, MoveError> {
        let task = self
            .tasks
            .get(id)
            .ok_or_else(|| MoveError::NotFound(id.to_string()))?;
        if task.state.next_by_hand().contains(&to) {
            Ok(task)
        } else {
            let allowed: Vec<&str> = task.state.next_by_hand().iter().map(|s| s.name()).collect();
            Err(MoveError::NotAllowed {
                id: id.to_string(),
                from: task.state.name(),
                to: to.name(),
                allowed: if allowed.is_empty() {
                    "nothing: it is finished".into()
                } else {
                    allowed.join(" or ")
                },
            })
        }
    }

    /// Records a state reached (after it was stored).
    pub fn set_state(&mut self, id: &str, to: State) {
        self.restore_state(id, to);
    }

    /// Tasks whose deadline passed by `now` while open or accepted: marked escalated, and
    /// returned with their deadlines (the instant they escalated).
    pub fn escalate_overdue(&mut self, now: Timestamp) -> Vec<(String, Timestamp)> {
        let mut out = Vec::new();
        while let Some((due, id)) = self.due.first().cloned() {
            if due > now {
                break;
            }
            self.due.pop_first();
            if let Some(t) = self.tasks.get_mut(&id)
                && t.state.is_pending()
            {
                t.state = State::Escalated;
                out.push((id, due));
            }
        }
        out
    }

    /// Counts by state.
    pub fn counts(&self) -> HashMap<State, usize> {
        let mut out = HashMap::new();
        for t in self.tasks.values() {
            *out.entry(t.state).or_insert(0) += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_opened_once_and_moves_only_forward() {
        let mut book = TaskBook::default();
        let id = book
            .open("elderly_card", "r1", "g1", Timestamp(1_000))
            .unwrap();
        assert_eq!(id, "T0000000");
        assert!(
            book.open("elderly_card", "r1", "g1", Timestamp(1_000))
                .is_none()
        );
        assert!(book.check_move(&id, State::Done).is_err());
        book.check_move(&id, State::Accepted).unwrap();
        book.set_state(&id, State::Accepted);
        assert!(book.escalate_overdue(Timestamp(999)).is_empty());
        assert_eq!(
            book.escalate_overdue(Timestamp(1_000)),
            vec![(id.clone(), Timestamp(1_000))]
        );
        assert_eq!(book.get(&id).unwrap().state, State::Escalated);
        book.check_move(&id, State::Done).unwrap();
        book.set_state(&id, State::Done);
        let err = book.check_move(&id, State::Refused).unwrap_err();
        assert!(err.to_string().contains("finished"), "{err}");
    }

    #[test]
    fn restored_tasks_keep_numbers_and_their_furthest_state() {
        let mut book = TaskBook::default();
        for (n, state) in [(4, State::Open), (9, State::Done)] {
            book.restore(TaskInfo {
                id: format!("T{n:07}"),
                service: "s".into(),
                resident_id: format!("r{n}"),
                grid: "g".into(),
                due_at: Timestamp(10),
                state: State::Open,
            });
            book.restore_state(&format!("T{n:07}"), state);
        }
        book.restore_state("T0000009", State::Accepted);
        assert_eq!(book.get("T0000009").unwrap().state, State::Done);
        assert_eq!(
            book.open("s", "r10", "g", Timestamp(5)).as_deref(),
            Some("T0000010")
        );
        let escalated: Vec<String> = book
            .escalate_overdue(Timestamp(20))
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(escalated, vec!["T0000010", "T0000004"]);
    }
}
