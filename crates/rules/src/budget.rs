//! Sharing a budget when the eligible amounts exceed it, to the fen: the amounts paid never
//! exceed what each enterprise qualified for, and their sum is exactly the budget (or the
//! total asked, when that is less).
//!
//! Pro rata: each amount is scaled by budget / total and rounded down; the fen left over
//! (fewer than the number of enterprises) go one each to the largest remainders, ties to the
//! earlier application, so nobody is a cent short of their fair share. First come: in the
//! order of application, each in full while the budget lasts; the first that no longer fits
//! gets what is left, the rest nothing.

use citybrain_core::Fen;

use crate::syntax::BudgetRule;

/// What each claim (in application order) is paid out of `budget`.
pub fn allocate(claims: &[Fen], budget: Fen, rule: BudgetRule) -> Vec<Fen> {
    let total: i128 = claims.iter().map(|c| i128::from(c.0.max(0))).sum();
    let budget = i128::from(budget.0.max(0));
    if total <= budget {
        return claims.iter().map(|c| Fen(c.0.max(0))).collect();
    }
    match rule {
        BudgetRule::FirstCome => {
            let mut left = budget;
            claims
                .iter()
                .map(|c| {
                    let pay = i128::from(c.0.max(0)).min(left);
                    left -= pay;
                    Fen(pay as i64)
                })
                .collect()
        }
        BudgetRule::ProRata => {
            let mut paid: Vec<i128> = Vec::with_capacity(claims.len());
            let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(claims.len());
            for (i, c) in claims.iter().enumerate() {
                let scaled = i128::from(c.0.max(0)) * budget;
                paid.push(scaled / total);
                remainders.push((scaled % total, i));
            }
            let mut left = budget - paid.iter().sum::<i128>();
            remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            for (rem, i) in remainders {
                if left == 0 || rem == 0 {
                    break;
                }
                paid[i] += 1;
                left -= 1;
            }
            paid.into_iter().map(|p| Fen(p as i64)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fens(v: &[i64]) -> Vec<Fen> {
        v.iter().map(|x| Fen(*x)).collect()
    }

    #[test]
    fn within_budget_everyone_gets_what_they_qualified_for() {
        let claims = fens(&[100, 250, 0]);
        assert_eq!(allocate(&claims, Fen(1_000), BudgetRule::ProRata), claims);
        assert_eq!(allocate(&claims, Fen(350), BudgetRule::FirstCome), claims);
    }

    #[test]
    fn pro_rata_pays_the_budget_exactly_and_nobody_more_than_asked() {
        // 1,000 fen over three equal claims of 500: 333.33 each; the one fen left goes to
        // the earliest application.
        let paid = allocate(&fens(&[500, 500, 500]), Fen(1_000), BudgetRule::ProRata);
        assert_eq!(paid, fens(&[334, 333, 333]));
        // Random claims: the sum is the budget, each within one fen of its exact share.
        let mut x: u64 = 12345;
        for _ in 0..200 {
            let claims: Vec<Fen> = (0..50)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    Fen((x >> 33) as i64 % 1_000_000)
                })
                .collect();
            let total: i64 = claims.iter().map(|c| c.0).sum();
            let budget = Fen(total / 3);
            let paid = allocate(&claims, budget, BudgetRule::ProRata);
            assert_eq!(paid.iter().map(|p| p.0).sum::<i64>(), budget.0);
            for (p, c) in paid.iter().zip(&claims) {
                let exact = c.0 as f64 * budget.0 as f64 / total as f64;
                assert!((p.0 as f64 - exact).abs() < 1.0 + 1e-6, "{p:?} vs {exact}");
                assert!(p.0 <= c.0);
            }
        }
    }

    #[test]
    fn first_come_pays_in_order_until_the_budget_is_gone() {
        let paid = allocate(&fens(&[400, 400, 400]), Fen(1_000), BudgetRule::FirstCome);
        assert_eq!(paid, fens(&[400, 400, 200]));
    }
}
