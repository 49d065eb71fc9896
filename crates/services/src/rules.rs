//! Service rules: files in the policy language of policy delivery (`citybrain_rules`), one
//! service each, reading only the residents' facts of [`crate::FACTS`], and a small TOML file
//! of how long the grid has to reach a resident per service. Loading checks everything at
//! once: syntax and types, inputs against the facts, the tests in each file, the SLA file's
//! service names.

use std::collections::{BTreeMap, HashSet};

use citybrain_core::Date;
use citybrain_rules::syntax::{PolicyAst, Type};
use serde::Deserialize;

use crate::facts::FACTS;

/// One service: its rule and its deadline.
#[derive(Debug, Clone)]
pub struct Service {
    /// The rule's name (`policy NAME`), which tasks and enrolments carry.
    pub name: String,
    pub title: String,
    /// The department whose service it is.
    pub department: String,
    /// Days the grid has to reach a resident before the task escalates.
    pub sla_days: u32,
    pub ast: PolicyAst,
}

impl Service {
    /// Whether the rule is in force on `day` (its `effective` range, when it has one).
    pub fn in_force(&self, day: Date) -> bool {
        self.ast
            .effective
            .is_none_or(|(from, to)| from <= day && day <= to)
    }
}

/// Every service a city runs.
#[derive(Debug, Clone, Default)]
pub struct ServiceRules {
    pub services: Vec<Service>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaFile {
    default_sla_days: u32,
    #[serde(default)]
    sla_days: BTreeMap<String, u32>,
}

/// The shipped service rules (illustrative: modelled on real services, not any city's law).
pub const SHIPPED_RULES: &[(&str, &str)] = &[
    (
        "old_age_allowance_80.policy",
        include_str!("../rules/old_age_allowance_80.policy"),
    ),
    (
        "old_age_allowance_90.policy",
        include_str!("../rules/old_age_allowance_90.policy"),
    ),
    (
        "centenarian_allowance.policy",
        include_str!("../rules/centenarian_allowance.policy"),
    ),
    (
        "elderly_card.policy",
        include_str!("../rules/elderly_card.policy"),
    ),
    (
        "free_transit_70.policy",
        include_str!("../rules/free_transit_70.policy"),
    ),
    (
        "elderly_health_check.policy",
        include_str!("../rules/elderly_health_check.policy"),
    ),
    (
        "living_alone_care.policy",
        include_str!("../rules/living_alone_care.policy"),
    ),
    (
        "home_care_subsidy.policy",
        include_str!("../rules/home_care_subsidy.policy"),
    ),
    (
        "minimum_living.policy",
        include_str!("../rules/minimum_living.policy"),
    ),
    (
        "low_income_margin.policy",
        include_str!("../rules/low_income_margin.policy"),
    ),
    (
        "medical_aid.policy",
        include_str!("../rules/medical_aid.policy"),
    ),
    (
        "disability_living_subsidy.policy",
        include_str!("../rules/disability_living_subsidy.policy"),
    ),
    (
        "severe_disability_care.policy",
        include_str!("../rules/severe_disability_care.policy"),
    ),
    (
        "disabled_employment_aid.policy",
        include_str!("../rules/disabled_employment_aid.policy"),
    ),
    (
        "childcare_subsidy.policy",
        include_str!("../rules/childcare_subsidy.policy"),
    ),
    (
        "resident_basic_pension.policy",
        include_str!("../rules/resident_basic_pension.policy"),
    ),
    (
        "employment_aid.policy",
        include_str!("../rules/employment_aid.policy"),
    ),
    (
        "elderly_meal_aid.policy",
        include_str!("../rules/elderly_meal_aid.policy"),
    ),
];

/// The shipped deadlines.
pub const SHIPPED_SLA: &str = include_str!("../rules/services.toml");

fn type_name(t: Type) -> &'static str {
    match t {
        Type::Int => "int",
        Type::Money | Type::MoneyExact => "money",
        Type::Rate => "rate",
        Type::Bool => "bool",
        Type::Text => "text",
        Type::Date => "date",
    }
}

impl ServiceRules {
    /// The shipped rules.
    pub fn shipped() -> Self {
        let files: Vec<(String, String)> = SHIPPED_RULES
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        Self::load(&files, SHIPPED_SLA).expect("the shipped service rules load")
    }

    /// Loads rule files (name, text) and the SLA file; every problem at once, each naming
    /// its file (and line and column where it has one).
    pub fn load(files: &[(String, String)], sla_text: &str) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let sla: Option<SlaFile> = match toml::from_str(sla_text) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("services.toml: {}", e.message()));
                None
            }
        };
        let mut services = Vec::new();
        let mut names = HashSet::new();
        for (file, text) in files {
            let policy =
                match citybrain_rules::load(text) {
                    Ok(p) => p,
                    Err(diags) => {
                        problems.extend(diags.iter().map(|d| {
                            format!("{file}:{}:{}: {}", d.pos.line, d.pos.col, d.message)
                        }));
                        continue;
                    }
                };
            let mut ok = true;
            for input in &policy.ast.inputs {
                match FACTS.iter().find(|f| f.0 == input.name) {
                    Some((_, ty, _)) if *ty == type_name(input.ty) => {}
                    Some((_, ty, _)) => {
                        ok = false;
                        problems.push(format!(
                            "{file}:{}:{}: input {} is a {ty} fact, not {}",
                            input.pos.line,
                            input.pos.col,
                            input.name,
                            type_name(input.ty)
                        ));
                    }
                    None => {
                        ok = false;
                        let known: Vec<&str> = FACTS.iter().map(|f| f.0).collect();
                        problems.push(format!(
                            "{file}:{}:{}: input {} is not a resident's fact (the facts: {})",
                            input.pos.line,
                            input.pos.col,
                            input.name,
                            known.join(", ")
                        ));
                    }
                }
            }
            for failure in policy.run_tests() {
                ok = false;
                problems.push(format!(
                    "{file}:{}:{}: test {:?} fails: {}",
                    failure.pos.line, failure.pos.col, failure.test, failure.message
                ));
            }
            if !names.insert(policy.ast.id.clone()) {
                ok = false;
                problems.push(format!(
                    "{file}: a second rule named {}; each service needs a name of its own",
                    policy.ast.id
                ));
            }
            if ok {
                services.push(Service {
                    name: policy.ast.id.clone(),
                    title: policy.ast.title.clone(),
                    department: policy.ast.department.clone(),
                    sla_days: 0,
                    ast: policy.ast,
                });
            }
        }
        if let Some(sla) = sla {
            for (name, days) in &sla.sla_days {
                if !names.contains(name) {
                    problems.push(format!(
                        "services.toml: sla_days.{name}: no service of that name"
                    ));
                }
                if *days == 0 {
                    problems.push(format!(
                        "services.toml: sla_days.{name}: give at least 1 day"
                    ));
                }
            }
            if sla.default_sla_days == 0 {
                problems.push("services.toml: default_sla_days: give at least 1 day".into());
            }
            for s in &mut services {
                s.sla_days = sla
                    .sla_days
                    .get(&s.name)
                    .copied()
                    .unwrap_or(sla.default_sla_days);
            }
        }
        if services.len() > usize::from(u16::MAX) {
            problems.push(format!("{} services: at most {}", services.len(), u16::MAX));
        }
        if problems.is_empty() {
            Ok(Self { services })
        } else {
            Err(problems)
        }
    }

    /// The service named `name`, by position.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_load_and_pass_their_tests() {
        let rules = ServiceRules::shipped();
        assert_eq!(rules.services.len(), SHIPPED_RULES.len());
        let living_alone = &rules.services[rules.position("living_alone_care").unwrap()];
        assert_eq!(living_alone.sla_days, 2);
        let card = &rules.services[rules.position("elderly_card").unwrap()];
        assert_eq!(card.sla_days, 14);
        let meal = &rules.services[rules.position("elderly_meal_aid").unwrap()];
        assert_eq!(meal.sla_days, 7);
    }

    #[test]
    fn a_rule_reading_an_unknown_fact_and_a_bad_deadline_are_refused_by_name() {
        let files = vec![(
            "pets.policy".to_string(),
            "policy pets\ntitle \"x\"\ndepartment civil_affairs\nbasis \"x\"\neffective 2025-01-01 to 2030-12-31\ninput dogs: int\nclause some: dogs > 0\namount: 0.00 yuan\n"
                .to_string(),
        )];
        let problems =
            ServiceRules::load(&files, "default_sla_days = 7\n[sla_days]\ncats = 3\n").unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("pets.policy:6:")
                    && p.contains("dogs is not a resident's fact")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("sla_days.cats: no service")),
            "{problems:?}"
        );
    }
}
