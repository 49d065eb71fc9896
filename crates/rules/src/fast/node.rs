//! The compiled expression tree: what a node computes per row ([`Node`]), what its values
//! are ([`ValueKind`]), and the small enums its operations are named by.

/// What a compiled node yields per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ValueKind {
    /// A decimal: the integer is the value times 10^scale.
    Num(u32),
    /// A quotient of two decimals (only compared or rounded).
    Frac(u32, u32),
    Bool,
    Date,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub(super) fn parse(op: &str) -> Option<Self> {
        Some(match op {
            "==" => Self::Eq,
            "!=" => Self::Ne,
            "<" => Self::Lt,
            "<=" => Self::Le,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            _ => return None,
        })
    }
    /// `b OP' a` when `a OP b`.
    pub(super) fn swap(self) -> Self {
        match self {
            Self::Lt => Self::Gt,
            Self::Le => Self::Ge,
            Self::Gt => Self::Lt,
            Self::Ge => Self::Le,
            x => x,
        }
    }
    #[inline(always)]
    pub(super) fn test<T: Ord>(self, a: T, b: T) -> bool {
        match self {
            Self::Eq => a == b,
            Self::Ne => a != b,
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Round {
    Down,
    Up,
    HalfEven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Arith {
    Add,
    Sub,
    Mul,
}

/// How an addition, subtraction or multiplication is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum ArithCheck {
    /// A row whose result overflows i64 is flagged.
    Checked,
    /// Proven by the value ranges (see [`mark_total`](super::bounds::mark_total)) never to
    /// overflow, so computed without checks.
    Unchecked,
}

/// Which of the two `Node::Logic` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Connective {
    And,
    Or,
}

/// Which of the two `Node::MinMax` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Extreme {
    Min,
    Max,
}

/// Whether `Node::DateShift` adds days or takes them away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Sign {
    Plus,
    Minus,
}

/// How a quotient comparison is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum FracCheck {
    /// A row whose products overflow i128, or whose divisor is zero, is flagged.
    Checked,
    /// Proven never to flag a row whose result is used; the products fit i128.
    Wide,
    /// As `Wide`, and the products fit i64 (counts against a percentage, mostly).
    Narrow,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Node {
    Col(usize),
    Const(i64),
    Neg(Box<Node>),
    Not(Box<Node>),
    Logic(Connective, Box<Node>, Box<Node>),
    /// Times a power of ten (aligning scales).
    Scale(Box<Node>, i64),
    Arith(Arith, Box<Node>, Box<Node>, ArithCheck),
    Cmp(Cmp, Box<Node>, Box<Node>),
    /// `(n / 10^sn) / (d / 10^sd)  OP  c / 10^sc`, as `n·10^(sd+sc)  OP  c·d·10^sn` with the
    /// comparison turned round when `d` is negative.
    CmpFrac {
        op: Cmp,
        /// A quotient-valued node.
        f: Box<Node>,
        c: Box<Node>,
        n_mul: i128,
        cd_mul: i128,
        /// Checked, or proven (see [`mark_safe`](super::bounds::mark_safe)) never to flag a row
        /// whose result is used.
        check: FracCheck,
    },
    MinMax(Extreme, Vec<Node>),
    /// Rounds `v / den` to a whole number.
    Round(Round, Box<Node>, i64),
    /// Rounds `(n·n_mul) / (d·d_mul)` to a whole number.
    RoundFrac {
        how: Round,
        f: Box<Node>,
        n_mul: i128,
        d_mul: i128,
    },
    If(Box<Node>, Box<Node>, Box<Node>),
    /// A date plus (or minus) `floor(v / den)` days.
    DateShift(Sign, Box<Node>, Box<Node>, i64),
    DateDiff(Box<Node>, Box<Node>),
    /// Numerator and denominator of a division (only inside `CmpFrac` / `RoundFrac`, or an
    /// `If` of quotients inside them); a decimal taking part is over `Const(1)`.
    Frac(Box<Node>, Box<Node>),
    /// A value that more than one place in the plan computes (see
    /// [`share_subtrees`](super::share::share_subtrees)): computed once per block, then handed
    /// out from the thread's memo.
    Memo(usize, Box<Node>),
}

/// Where a node stands: in a value's place, or in a quotient's (a `CmpFrac` or `RoundFrac`
/// takes a `Frac`, or an `If` of quotients, there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Value,
    Quotient,
}

/// Calls `f` on each child of `node`, with whether the child is in a quotient's place (`Frac`
/// or an `If` of quotients) rather than a value's.
pub(super) fn children_mut(node: &mut Node, place: Place, f: &mut impl FnMut(&mut Node, Place)) {
    match node {
        Node::Col(_) | Node::Const(_) => {}
        Node::Neg(x) | Node::Not(x) | Node::Scale(x, _) | Node::Round(_, x, _) => {
            f(x, Place::Value)
        }
        Node::Logic(_, a, b)
        | Node::Arith(_, a, b, _)
        | Node::Cmp(_, a, b)
        | Node::DateShift(_, a, b, _)
        | Node::DateDiff(a, b)
        | Node::Frac(a, b) => {
            f(a, Place::Value);
            f(b, Place::Value);
        }
        Node::CmpFrac { f: q, c, .. } => {
            f(q, Place::Quotient);
            f(c, Place::Value);
        }
        Node::RoundFrac { f: q, .. } => f(q, Place::Quotient),
        Node::MinMax(_, xs) => xs.iter_mut().for_each(|x| f(x, Place::Value)),
        Node::If(c, a, b) => {
            f(c, Place::Value);
            f(a, place);
            f(b, place);
        }
        Node::Memo(_, x) => f(x, place),
    }
}
