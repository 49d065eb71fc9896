//! The decisions, on the data's own clock.
//!
//! Facts arrive in the order departments publish them. The engine's day is the local day of
//! the newest fact seen; when a fact of a later day arrives, every resident is decided for
//! each day that began (the "morning" sweep: everyone's age on that day, the facts as they
//! stood), with the fast evaluator over the whole population, and then the fact is applied
//! and the residents it touches are decided again with the interpreter. A resident eligible
//! for a service they do not receive, with no task ever opened for it, gets a task.
//!
//! Before the first sweep nothing is decided: the registries' first load arrives record by
//! record, and a rule such as "60 or over with no pension" must not fire on a resident whose
//! insurance row has not arrived yet. The first sweep is at the first change of day, or when
//! the scene has caught up with everything stored (`caught_up`).

use std::collections::HashSet;

use citybrain_core::{Date, TimeZone, Timestamp};
use citybrain_rules::Decision;
use citybrain_rules::fast::{Claims, Plan, run};

use crate::facts::{Population, Update};
use crate::rules::ServiceRules;
use crate::tasks::TaskBook;

/// Days swept at most when the clock jumps (a registry loaded from years back is decided
/// on its last month of days, not on every day since).
const MAX_SWEEP_DAYS: i32 = 31;

/// A task opened: the row to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub task_id: String,
    /// Position in the rules.
    pub service: usize,
    /// The resident, by index in the population.
    pub resident: u32,
    pub opened_at: Timestamp,
    pub due_at: Timestamp,
    /// The rule's clauses with the resident's values.
    pub why: String,
}

/// The services scene's state, without I/O.
#[derive(Debug)]
pub struct Engine {
    pub rules: ServiceRules,
    zone: TimeZone,
    pub population: Population,
    /// (service position, resident index) already receiving the service.
    enrolled: HashSet<(u16, u32)>,
    pub tasks: TaskBook,
    clock: Option<Timestamp>,
    day: Option<Date>,
    swept: Option<Date>,
    threads: usize,
    /// Rows a sweep could not decide (an overflow, a rule error), for the logs.
    pub undecided: u64,
}

/// Describes a decision as its clauses and the values they read.
pub fn explain(decision: &Decision) -> String {
    decision
        .clauses
        .iter()
        .map(|c| {
            let values: Vec<String> = c.values.iter().map(|(n, v)| format!("{n} = {v}")).collect();
            format!(
                "{}: {} {}",
                c.name,
                values.join(", "),
                if c.held { "✓" } else { "✗" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Engine {
    pub fn new(rules: ServiceRules, zone: TimeZone, threads: usize) -> Self {
        Self {
            rules,
            zone,
            population: Population::default(),
            enrolled: HashSet::new(),
            tasks: TaskBook::default(),
            clock: None,
            day: None,
            swept: None,
            threads: threads.max(1),
            undecided: 0,
        }
    }

    /// The newest fact's time.
    pub fn clock(&self) -> Option<Timestamp> {
        self.clock
    }
    /// The last day every resident was decided on.
    pub fn swept(&self) -> Option<Date> {
        self.swept
    }

    /// Applies one fact (see the module): the tasks it opens, the morning sweeps first.
    pub fn apply(&mut self, update: &Update) -> Vec<NewTask> {
        let at = update.at();
        let day = self.zone.local_day(at);
        let mut out = Vec::new();
        match self.day {
            Some(today) if day > today => {
                let first = Date((today.0 + 1).max(day.0 - MAX_SWEEP_DAYS + 1));
                for d in first.0..=day.0 {
                    out.extend(self.sweep(Date(d)));
                }
                self.day = Some(day);
            }
            None => self.day = Some(day),
            _ => {}
        }
        self.clock = Some(self.clock.map_or(at, |c| c.max(at)));
        let affected = self.population.apply(update);
        if let Update::Enrolment(e) = update
            && let (Some(s), Some(r)) = (
                self.rules.position(&e.service),
                self.population.index_of(&e.resident_id),
            )
        {
            self.enrolled.insert((s as u16, r));
        }
        if let (Some(today), Some(_)) = (self.day, self.swept) {
            let opened = at.max(self.zone.day_start(today));
            for r in affected {
                out.extend(self.decide_one(r, today, opened));
            }
        }
        out
    }

    /// Once everything stored has been applied: the first sweep, if none was made.
    pub fn caught_up(&mut self) -> Vec<NewTask> {
        match (self.swept, self.day) {
            (None, Some(day)) => self.sweep(day),
            _ => Vec::new(),
        }
    }

    /// Tasks whose deadline the data's clock has passed: (task id, when it escalated).
    pub fn overdue(&mut self) -> Vec<(String, Timestamp)> {
        match self.clock {
            Some(now) => self.tasks.escalate_overdue(now),
            None => Vec::new(),
        }
    }

    fn can_open(&self, service: usize, resident: u32) -> bool {
        let r = self.population.get(resident);
        r.registered
            && r.living
            && !self.enrolled.contains(&(service as u16, resident))
            && !self.tasks.exists(&self.rules.services[service].name, &r.id)
    }

    fn open(&mut self, service: usize, resident: u32, opened: Timestamp, why: String) -> NewTask {
        let s = &self.rules.services[service];
        let due_at = Timestamp(opened.0 + i64::from(s.sla_days) * 86_400_000_000);
        let r = self.population.get(resident);
        let task_id = self
            .tasks
            .open(&s.name, &r.id, &r.grid, due_at)
            .expect("checked by can_open");
        NewTask {
            task_id,
            service,
            resident,
            opened_at: opened,
            due_at,
            why,
        }
    }

    /// Decides one resident on `day` with the interpreter.
    fn decide_one(&mut self, resident: u32, day: Date, opened: Timestamp) -> Vec<NewTask> {
        let mut out = Vec::new();
        if !self.population.get(resident).registered || !self.population.get(resident).living {
            return out;
        }
        let facts = self.population.facts(resident, day);
        for s in 0..self.rules.services.len() {
            if !self.rules.services[s].in_force(day) || !self.can_open(s, resident) {
                continue;
            }
            match citybrain_rules::decide(&self.rules.services[s].ast, &facts, day) {
                Ok(d) if d.eligible => out.push(self.open(s, resident, opened, explain(&d))),
                Ok(_) => {}
                Err(_) => self.undecided += 1,
            }
        }
        out
    }

    /// Every resident on `day`, with the fast evaluator.
    fn sweep(&mut self, day: Date) -> Vec<NewTask> {
        self.swept = Some(day);
        let in_force: Vec<usize> = (0..self.rules.services.len())
            .filter(|s| self.rules.services[*s].in_force(day))
            .collect();
        let eligible = self.eligible_on(day, &in_force);
        let opened = self.zone.day_start(day);
        let mut out = Vec::new();
        for (s, rows) in in_force.iter().zip(eligible) {
            for r in rows {
                if !self.can_open(*s, r) {
                    continue;
                }
                let facts = self.population.facts(r, day);
                let why = match citybrain_rules::decide(&self.rules.services[*s].ast, &facts, day) {
                    Ok(d) => explain(&d),
                    Err(e) => e.to_string(),
                };
                out.push(self.open(*s, r, opened, why));
            }
        }
        out
    }

    /// The residents eligible on `day` for each service of `services` (rows in order).
    pub fn eligible_on(&mut self, day: Date, services: &[usize]) -> Vec<Vec<u32>> {
        let table = self.population.table(day);
        let plan = Plan::new(
            services.iter().map(|s| (&self.rules.services[*s].ast, day)),
            &table,
        );
        let claims = Claims::merge(run(&plan, &table, self.threads, || {
            Claims::new(vec![true; services.len()])
        }));
        claims
            .per_policy
            .into_iter()
            .map(|p| {
                self.undecided += p.errors;
                p.claims.into_iter().map(|(row, _)| row).collect()
            })
            .collect()
    }

    /// Every service's decision for one resident on the engine's day (for "why" and "why
    /// not" on request).
    pub fn explain_resident(&self, resident_id: &str) -> Option<Vec<(usize, Decision)>> {
        let r = self.population.index_of(resident_id)?;
        let day = self.day?;
        let facts = self.population.facts(r, day);
        Some(
            (0..self.rules.services.len())
                .filter_map(|s| {
                    citybrain_rules::decide(&self.rules.services[s].ast, &facts, day)
                        .ok()
                        .map(|d| (s, d))
                })
                .collect(),
        )
    }

    /// Whether the resident already receives the service.
    pub fn is_enrolled(&self, service: usize, resident: u32) -> bool {
        self.enrolled.contains(&(service as u16, resident))
    }
}
