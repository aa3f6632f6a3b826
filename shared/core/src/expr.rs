//! Rule and metric expressions: CEL syntax (parsed by the `cel` crate's parser) compiled and
//! type-checked into a small typed tree evaluated over a row's typed values.
//!
//! Semantics: SQL-like nulls (a null operand makes comparisons and arithmetic null;
//! `&&`/`||` are three-valued; a condition matches only when it is `true`). `x == null`
//! tests for null. Int arithmetic that overflows or divides by zero yields null.

use std::borrow::Cow;
use std::cmp::Ordering;

use cel::common::ast::{Expr as CelExpr, LiteralValue as CelVal};
use cel::IdedExpr;
use smallvec::SmallVec;

use std::sync::{Arc, LazyLock};

use crate::resources::{LookupTable, Model, Resources};
use crate::types::{parse_float, same_bytes, Val};

static NO_RESOURCES: LazyLock<Resources> = LazyLock::new(Resources::default);

/// The static type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int,
    Float,
    Str,
    Ts,
    /// The `null` literal.
    Null,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Float => "float",
            Type::Str => "string",
            Type::Ts => "timestamp",
            Type::Null => "null",
        }
    }
    fn numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }
}

impl From<crate::types::ColumnType> for Type {
    fn from(t: crate::types::ColumnType) -> Self {
        use crate::types::ColumnType as C;
        match t {
            C::String => Type::Str,
            C::Int => Type::Int,
            C::Float => Type::Float,
            C::Bool => Type::Bool,
            C::Timestamp => Type::Ts,
        }
    }
}

/// Names visible to an expression: each resolves to a slot of the evaluated row.
pub trait Scope {
    fn lookup(&self, name: &str) -> Option<(usize, Type)>;
    /// What the names are, for error messages ("column", "metric").
    fn kind(&self) -> &'static str {
        "column"
    }
}

/// A scope made of an ordered list of names; slot = position.
pub struct ListScope<'s> {
    pub names: &'s [(String, Type)],
    pub kind: &'static str,
}

impl Scope for ListScope<'_> {
    fn lookup(&self, name: &str) -> Option<(usize, Type)> {
        self.names
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.names[i].1))
    }
    fn kind(&self) -> &'static str {
        self.kind
    }
}

/// A compile error (one line, without the pipeline context).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError(msg.into()))
}

/// Parses CEL source into its AST; the error is one line.
pub fn parse(src: &str) -> Result<IdedExpr, ExprError> {
    if src.trim().is_empty() {
        return err("empty expression");
    }
    cel::parser::Parser::new()
        .max_recursion_depth(64)
        .parse(src)
        .map_err(|e| {
            let first = e
                .errors
                .first()
                .map(|p| format!("syntax error at column {}: {}", p.pos.1 + 1, p.msg))
                .unwrap_or_else(|| "syntax error".to_string());
            ExprError(format!("{first} in \"{src}\""))
        })
}

#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Ts(i64),
}

impl Lit {
    fn val(&self) -> Val<'_> {
        match self {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Int(i) => Val::Int(*i),
            Lit::Float(f) => Val::Float(*f),
            Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
            Lit::Ts(t) => Val::Ts(*t),
        }
    }
    fn ty(&self) -> Type {
        match self {
            Lit::Null => Type::Null,
            Lit::Bool(_) => Type::Bool,
            Lit::Int(_) => Type::Int,
            Lit::Float(_) => Type::Float,
            Lit::Str(_) => Type::Str,
            Lit::Ts(_) => Type::Ts,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn test(self, o: Ordering) -> bool {
        match self {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// How an arithmetic node computes (decided at compile time).
#[derive(Clone, Copy, Debug, PartialEq)]
enum ArKind {
    Int,
    Float,
    /// ts ± int -> ts
    TsInt,
    /// ts - ts -> int (milliseconds)
    TsTs,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Func {
    Abs,
    Min,
    Max,
    Clamp,
    Lower,
    Upper,
    Size,
    Contains,
    StartsWith,
    EndsWith,
    ToInt,
    ToFloat,
    ToStr,
    Round,
    Floor,
    Ceil,
    /// Hour of the day (UTC) of a timestamp.
    Hour,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Lit(Lit),
    Col(usize),
    Not(Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Arith(ArOp, ArKind, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    IsNull(Box<Node>, bool),
    In(Box<Node>, Vec<Lit>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Call(Func, Type, Vec<Node>),
    /// `lookup(table, key, "column")`: the column index in the table.
    Lookup(Shared<LookupTable>, usize, Box<Node>),
    /// `score(model, feature, ...)`.
    Score(Shared<Model>, Vec<Node>),
    /// `sentiment(text)`.
    Sentiment(Box<Node>),
}

/// A shared resource inside a compiled expression; equal when it is the same resource.
#[derive(Debug)]
struct Shared<T>(Arc<T>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<T> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A compiled, type-checked expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    node: Node,
    ty: Type,
    /// Slots the expression reads (sorted, deduplicated).
    slots: Vec<usize>,
    /// The condition's shape, when it is one [`Expr::matches`] tests without walking
    /// `node`.
    shape: Shape,
}

/// The shape of a condition that [`Expr::matches`] tests straight from the row, without
/// building a value (each gives what the tree gives).
#[derive(Clone, Debug, PartialEq)]
enum Shape {
    /// Any other expression: evaluated.
    Tree,
    /// `column c literal`: `amount > 5000`.
    ColumnLiteral(CmpOp, usize, Lit),
    /// `column c column`: `country != home_country`.
    Columns(CmpOp, usize, usize),
}

impl Shape {
    fn of(node: &Node) -> Shape {
        let Node::Cmp(c, a, b) = node else {
            return Shape::Tree;
        };
        match (&**a, &**b) {
            (Node::Col(i), Node::Lit(l)) => Shape::ColumnLiteral(*c, *i, l.clone()),
            (Node::Col(i), Node::Col(j)) => Shape::Columns(*c, *i, *j),
            _ => Shape::Tree,
        }
    }
}

impl Expr {
    /// Parses and compiles `src` against `scope` (no lookup tables or models).
    pub fn compile(src: &str, scope: &dyn Scope) -> Result<Expr, ExprError> {
        Self::compile_in(src, scope, &NO_RESOURCES)
    }

    /// Parses and compiles `src` against `scope`, with the pipeline's lookup tables and
    /// models available to `lookup(...)` and `score(...)`.
    pub fn compile_in(src: &str, scope: &dyn Scope, res: &Resources) -> Result<Expr, ExprError> {
        Self::compile_ast(&parse(src)?, scope, res)
    }

    /// Compiles an already parsed AST.
    pub fn compile_ast(
        ast: &IdedExpr,
        scope: &dyn Scope,
        res: &Resources,
    ) -> Result<Expr, ExprError> {
        let mut slots = Vec::new();
        let (node, ty) = Compiler {
            scope,
            slots: &mut slots,
            res,
        }
        .compile(ast)?;
        slots.sort_unstable();
        slots.dedup();
        let shape = Shape::of(&node);
        Ok(Expr {
            node,
            ty,
            slots,
            shape,
        })
    }

    /// Compiles a condition: the expression must be bool.
    pub fn compile_condition(src: &str, scope: &dyn Scope) -> Result<Expr, ExprError> {
        Self::compile_condition_in(src, scope, &NO_RESOURCES)
    }

    /// [`Expr::compile_condition`] with the pipeline's lookup tables and models.
    pub fn compile_condition_in(
        src: &str,
        scope: &dyn Scope,
        res: &Resources,
    ) -> Result<Expr, ExprError> {
        let e = Self::compile_in(src, scope, res)?;
        if e.ty != Type::Bool {
            return err(format!(
                "condition \"{src}\" is {}, expected bool",
                e.ty.name()
            ));
        }
        Ok(e)
    }

    pub fn ty(&self) -> Type {
        self.ty
    }

    /// Slots read by the expression.
    pub fn slots(&self) -> &[usize] {
        &self.slots
    }

    /// If the expression is just a column reference, its slot.
    pub fn as_column(&self) -> Option<usize> {
        match self.node {
            Node::Col(i) => Some(i),
            _ => None,
        }
    }

    /// Evaluates over a row; slots out of range read as null.
    pub fn eval<'a>(&'a self, row: &[Val<'a>]) -> Val<'a> {
        eval(&self.node, row)
    }

    /// Evaluates a condition: true only when the result is `true`.
    #[inline]
    pub fn matches(&self, row: &[Val<'_>]) -> bool {
        match &self.shape {
            // Floats against a literal and strings for (in)equality, the commonest, on
            // their own paths; any other kind of value the general way.
            &Shape::ColumnLiteral(c, i, Lit::Float(y)) => match column(row, i) {
                Val::Float(x) => x.partial_cmp(&y).is_some_and(|o| c.test(o)),
                v => holds(c, v, &Val::Float(y)),
            },
            Shape::ColumnLiteral(c, i, l) => holds(*c, column(row, *i), &l.val()),
            &Shape::Columns(c, i, j) => match (c, column(row, i), column(row, j)) {
                (CmpOp::Eq | CmpOp::Ne, Val::Str(x), Val::Str(y)) => {
                    same_bytes(x.as_bytes(), y.as_bytes()) == (c == CmpOp::Eq)
                }
                (_, x, y) => holds(c, x, y),
            },
            Shape::Tree => eval(&self.node, row).is_true(),
        }
    }
}

struct Compiler<'c> {
    scope: &'c dyn Scope,
    slots: &'c mut Vec<usize>,
    res: &'c Resources,
}

fn func_from_name(name: &str) -> Option<Func> {
    Some(match name {
        "abs" => Func::Abs,
        "min" => Func::Min,
        "max" => Func::Max,
        "clamp" => Func::Clamp,
        "lower" | "lowerAscii" => Func::Lower,
        "upper" | "upperAscii" => Func::Upper,
        "size" | "len" | "length" => Func::Size,
        "contains" => Func::Contains,
        "startsWith" | "starts_with" => Func::StartsWith,
        "endsWith" | "ends_with" => Func::EndsWith,
        "int" => Func::ToInt,
        "double" | "float" => Func::ToFloat,
        "string" => Func::ToStr,
        "round" => Func::Round,
        "floor" => Func::Floor,
        "ceil" => Func::Ceil,
        "hour" | "getHours" => Func::Hour,
        _ => return None,
    })
}

/// Names of the functions usable inside expressions (for error messages).
pub const FUNCTIONS: &str = "abs, min, max, clamp, lower, upper, size, contains, startsWith, endsWith, int, double, string, round, floor, ceil, hour, lookup, score, sentiment";

impl Compiler<'_> {
    fn compile(&mut self, e: &IdedExpr) -> Result<(Node, Type), ExprError> {
        match &e.expr {
            CelExpr::Literal(v) => {
                let lit = match v {
                    CelVal::Null => Lit::Null,
                    CelVal::Boolean(b) => Lit::Bool(*b.inner()),
                    CelVal::Int(i) => Lit::Int(*i.inner()),
                    CelVal::UInt(u) => match i64::try_from(*u.inner()) {
                        Ok(i) => Lit::Int(i),
                        Err(_) => return err(format!("integer {} is too large", u.inner())),
                    },
                    CelVal::Double(f) => Lit::Float(*f.inner()),
                    CelVal::String(s) => Lit::Str(s.inner().to_string()),
                    CelVal::Bytes(_) => return err("bytes literals are not supported"),
                };
                let ty = lit.ty();
                Ok((Node::Lit(lit), ty))
            }
            CelExpr::Ident(name) => match self.scope.lookup(name) {
                Some((slot, ty)) => {
                    self.slots.push(slot);
                    Ok((Node::Col(slot), ty))
                }
                None => err(format!("unknown {} \"{name}\"", self.scope.kind())),
            },
            CelExpr::Call(call) => {
                let mut args: Vec<&IdedExpr> = Vec::with_capacity(call.args.len() + 1);
                if let Some(t) = &call.target {
                    args.push(t);
                }
                args.extend(call.args.iter());
                self.call(&call.func_name, &args)
            }
            // `prev.metric`: the metric of the previous window, in window rules.
            CelExpr::Select(s) => match &s.operand.expr {
                CelExpr::Ident(base) => {
                    let name = format!("{base}.{}", s.field);
                    match self.scope.lookup(&name) {
                        Some((slot, ty)) => {
                            self.slots.push(slot);
                            Ok((Node::Col(slot), ty))
                        }
                        None if base == "prev" => err(format!(
                            "unknown {} \"{name}\" (prev.<metric> is only available in window rules)",
                            self.scope.kind()
                        )),
                        None => err(format!("unknown {} \"{name}\"", self.scope.kind())),
                    }
                }
                _ => err(format!("field selection \".{}\" is not supported", s.field)),
            },
            CelExpr::List(_) => err("a list is only allowed on the right of `in`"),
            CelExpr::Map(_) | CelExpr::Struct(_) => err("maps and structs are not supported"),
            CelExpr::Comprehension(_) => {
                err("macros (has, all, exists, map, filter) are not supported")
            }
            CelExpr::Unspecified => err("empty expression"),
        }
    }

    fn call(&mut self, name: &str, args: &[&IdedExpr]) -> Result<(Node, Type), ExprError> {
        use cel::common::ast::operators as op;
        let cmp = |n: &str| -> Option<CmpOp> {
            Some(match n {
                op::EQUALS => CmpOp::Eq,
                op::NOT_EQUALS => CmpOp::Ne,
                op::LESS => CmpOp::Lt,
                op::LESS_EQUALS => CmpOp::Le,
                op::GREATER => CmpOp::Gt,
                op::GREATER_EQUALS => CmpOp::Ge,
                _ => return None,
            })
        };
        let arith = |n: &str| -> Option<ArOp> {
            Some(match n {
                op::ADD => ArOp::Add,
                op::SUBSTRACT => ArOp::Sub,
                op::MULTIPLY => ArOp::Mul,
                op::DIVIDE => ArOp::Div,
                op::MODULO => ArOp::Rem,
                _ => return None,
            })
        };
        if let Some(c) = cmp(name) {
            let [a, b] = args else {
                return err("comparison needs two operands");
            };
            return self.comparison(c, a, b);
        }
        if let Some(o) = arith(name) {
            let [a, b] = args else {
                return err("arithmetic needs two operands");
            };
            return self.arithmetic(o, a, b);
        }
        match name {
            op::LOGICAL_AND | op::LOGICAL_OR => {
                let mut it = args.iter();
                let Some(first) = it.next() else {
                    return err("logical operator without operands");
                };
                let mut acc = self.boolean(first, name)?;
                for a in it {
                    let rhs = self.boolean(a, name)?;
                    acc = if name == op::LOGICAL_AND {
                        Node::And(Box::new(acc), Box::new(rhs))
                    } else {
                        Node::Or(Box::new(acc), Box::new(rhs))
                    };
                }
                Ok((acc, Type::Bool))
            }
            op::LOGICAL_NOT => {
                let [a] = args else {
                    return err("! needs one operand");
                };
                Ok((Node::Not(Box::new(self.boolean(a, "!")?)), Type::Bool))
            }
            op::NEGATE => {
                let [a] = args else {
                    return err("- needs one operand");
                };
                let (n, t) = self.compile(a)?;
                if !t.numeric() {
                    return err(format!("cannot negate a {}", t.name()));
                }
                Ok((Node::Neg(Box::new(n)), t))
            }
            op::CONDITIONAL => {
                let [c, a, b] = args else {
                    return err("?: needs three operands");
                };
                let c = self.boolean(c, "?:")?;
                let (a, ta) = self.compile(a)?;
                let (b, tb) = self.compile(b)?;
                let ty = match (ta, tb) {
                    _ if ta == tb => ta,
                    (Type::Null, t) | (t, Type::Null) => t,
                    (Type::Int, Type::Float) | (Type::Float, Type::Int) => Type::Float,
                    _ => {
                        return err(format!(
                            "?: branches have different types ({} and {})",
                            ta.name(),
                            tb.name()
                        ))
                    }
                };
                Ok((Node::Cond(Box::new(c), Box::new(a), Box::new(b)), ty))
            }
            op::IN => {
                let [a, list] = args else {
                    return err("`in` needs two operands");
                };
                let (n, t) = self.compile(a)?;
                let CelExpr::List(l) = &list.expr else {
                    return err(
                        "the right side of `in` must be a list literal like [\"FR\", \"DE\"]",
                    );
                };
                let mut lits = Vec::with_capacity(l.elements.len());
                for el in &l.elements {
                    let (ln, lt) = Compiler {
                        scope: &EmptyScope,
                        slots: &mut Vec::new(),
                        res: self.res,
                    }
                    .compile(el)
                    .map_err(|_| ExprError("`in` list elements must be literals".into()))?;
                    let Node::Lit(lit) = ln else {
                        return err("`in` list elements must be literals");
                    };
                    let ok = lt == t || (lt.numeric() && t.numeric()) || lt == Type::Null;
                    if !ok {
                        return err(format!(
                            "`in` list element of type {} does not match {}",
                            lt.name(),
                            t.name()
                        ));
                    }
                    lits.push(lit);
                }
                Ok((Node::In(Box::new(n), lits), Type::Bool))
            }
            op::INDEX | op::OPT_INDEX | op::OPT_SELECT => err("indexing is not supported"),
            _ => self.function(name, args),
        }
    }

    fn boolean(&mut self, e: &IdedExpr, what: &str) -> Result<Node, ExprError> {
        let (n, t) = self.compile(e)?;
        match t {
            Type::Bool | Type::Null => Ok(n),
            _ => err(format!(
                "operand of {} must be bool, found {}",
                what.trim_matches('_'),
                t.name()
            )),
        }
    }

    fn comparison(
        &mut self,
        c: CmpOp,
        a: &IdedExpr,
        b: &IdedExpr,
    ) -> Result<(Node, Type), ExprError> {
        let (mut na, ta) = self.compile(a)?;
        let (mut nb, tb) = self.compile(b)?;
        // `x == null` / `x != null`.
        if matches!(c, CmpOp::Eq | CmpOp::Ne) && (ta == Type::Null || tb == Type::Null) {
            let x = if ta == Type::Null { nb } else { na };
            return Ok((Node::IsNull(Box::new(x), c == CmpOp::Ne), Type::Bool));
        }
        // A string literal compared with a timestamp is read as RFC 3339.
        for (n, other) in [(&mut na, tb), (&mut nb, ta)] {
            if other == Type::Ts {
                if let Node::Lit(Lit::Str(s)) = n {
                    let p = crate::types::TimeParser {
                        format: crate::types::TimeFormat::Rfc3339,
                        tz: None,
                    };
                    match p.parse(s) {
                        Ok(ms) => *n = Node::Lit(Lit::Ts(ms)),
                        Err(_) => return err(format!("\"{s}\" is not an RFC 3339 timestamp")),
                    }
                }
            }
        }
        let ta = node_type(&na, ta);
        let tb = node_type(&nb, tb);
        let ok = (ta.numeric() && tb.numeric())
            || (ta == tb && (ta != Type::Bool || matches!(c, CmpOp::Eq | CmpOp::Ne)));
        if !ok {
            return err(format!("cannot compare {} with {}", ta.name(), tb.name()));
        }
        // An int literal compared with a float is the float it would be converted to at
        // each comparison.
        for (n, other) in [(&mut na, tb), (&mut nb, ta)] {
            if let (Node::Lit(Lit::Int(i)), Type::Float) = (&*n, other) {
                *n = Node::Lit(Lit::Float(*i as f64));
            }
        }
        Ok((Node::Cmp(c, Box::new(na), Box::new(nb)), Type::Bool))
    }

    fn arithmetic(
        &mut self,
        o: ArOp,
        a: &IdedExpr,
        b: &IdedExpr,
    ) -> Result<(Node, Type), ExprError> {
        let (na, ta) = self.compile(a)?;
        let (nb, tb) = self.compile(b)?;
        let (kind, ty) = match (ta, tb, o) {
            (Type::Int, Type::Int, _) => (ArKind::Int, Type::Int),
            (x, y, _) if x.numeric() && y.numeric() => (ArKind::Float, Type::Float),
            (Type::Ts, Type::Int, ArOp::Add | ArOp::Sub) => (ArKind::TsInt, Type::Ts),
            (Type::Ts, Type::Ts, ArOp::Sub) => (ArKind::TsTs, Type::Int),
            _ => {
                return err(format!(
                    "cannot apply arithmetic to {} and {}",
                    ta.name(),
                    tb.name()
                ))
            }
        };
        Ok((Node::Arith(o, kind, Box::new(na), Box::new(nb)), ty))
    }

    fn function(&mut self, name: &str, args: &[&IdedExpr]) -> Result<(Node, Type), ExprError> {
        match name {
            "lookup" => return self.lookup(args),
            "score" => return self.score(args),
            "sentiment" => {
                let [text] = args else {
                    return err(format!("sentiment() takes 1 argument, got {}", args.len()));
                };
                let (n, t) = self.compile(text)?;
                if !matches!(t, Type::Str | Type::Null) {
                    return err(format!("sentiment() expects a string, got {}", t.name()));
                }
                return Ok((Node::Sentiment(Box::new(n)), Type::Float));
            }
            _ => {}
        }
        let Some(f) = func_from_name(name) else {
            return err(format!(
                "unknown function \"{name}\" (expression functions: {FUNCTIONS})"
            ));
        };
        let mut nodes = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for a in args {
            let (n, t) = self.compile(a)?;
            nodes.push(n);
            types.push(t);
        }
        let arity = |lo: usize, hi: usize| -> Result<(), ExprError> {
            if types.len() < lo || types.len() > hi {
                err(format!(
                    "{name}() takes {lo}..{hi} arguments, got {}",
                    types.len()
                ))
            } else {
                Ok(())
            }
        };
        let all = |pred: fn(Type) -> bool, what: &str| -> Result<(), ExprError> {
            match types.iter().find(|t| !pred(**t)) {
                Some(t) => err(format!("{name}() expects {what}, got {}", t.name())),
                None => Ok(()),
            }
        };
        let numeric = |t: Type| t.numeric() || t == Type::Null;
        let string = |t: Type| t == Type::Str || t == Type::Null;
        let num_ty = if types.iter().all(|t| *t == Type::Int) {
            Type::Int
        } else {
            Type::Float
        };
        let ty = match f {
            Func::Abs => {
                arity(1, 1)?;
                all(numeric, "a number")?;
                num_ty
            }
            Func::Min | Func::Max => {
                arity(2, 64)?;
                all(numeric, "numbers")?;
                num_ty
            }
            Func::Clamp => {
                arity(3, 3)?;
                all(numeric, "numbers")?;
                num_ty
            }
            Func::Round | Func::Floor | Func::Ceil => {
                arity(1, 1)?;
                all(numeric, "a number")?;
                Type::Float
            }
            Func::Lower | Func::Upper => {
                arity(1, 1)?;
                all(string, "a string")?;
                Type::Str
            }
            Func::Size => {
                arity(1, 1)?;
                all(string, "a string")?;
                Type::Int
            }
            Func::Contains | Func::StartsWith | Func::EndsWith => {
                arity(2, 2)?;
                all(string, "strings")?;
                Type::Bool
            }
            Func::ToInt => {
                arity(1, 1)?;
                Type::Int
            }
            Func::ToFloat => {
                arity(1, 1)?;
                Type::Float
            }
            Func::ToStr => {
                arity(1, 1)?;
                Type::Str
            }
            Func::Hour => {
                arity(1, 1)?;
                all(|t| matches!(t, Type::Ts | Type::Null), "a timestamp")?;
                Type::Int
            }
        };
        Ok((Node::Call(f, ty, nodes), ty))
    }
}

impl Compiler<'_> {
    /// `lookup("table", key, "column")`: a string, null for an unknown key.
    fn lookup(&mut self, args: &[&IdedExpr]) -> Result<(Node, Type), ExprError> {
        let [table, key, column] = args else {
            return err(format!(
                "lookup() takes 3 arguments (table, key, column), got {}",
                args.len()
            ));
        };
        let table_name = string_literal(table, "lookup()'s table")?;
        let Some(t) = self.res.lookups.get(table_name) else {
            return err(format!("unknown lookup table \"{table_name}\""));
        };
        let column_name = string_literal(column, "lookup()'s column")?;
        let Some(c) = t.column(column_name) else {
            return err(format!(
                "lookup table \"{table_name}\" has no column \"{column_name}\" (columns: {})",
                t.columns().join(", ")
            ));
        };
        let (k, kt) = self.compile(key)?;
        if !matches!(kt, Type::Str | Type::Null) {
            return err(format!("lookup() key must be a string, got {}", kt.name()));
        }
        Ok((Node::Lookup(Shared(t.clone()), c, Box::new(k)), Type::Str))
    }

    /// `score("model", feature, ...)`: the model's probability; numbers and bools (1/0)
    /// as features, in the model's feature order.
    fn score(&mut self, args: &[&IdedExpr]) -> Result<(Node, Type), ExprError> {
        let Some((model, features)) = args.split_first() else {
            return err("score() needs a model name and its features");
        };
        let model_name = string_literal(model, "score()'s model")?;
        let Some(m) = self.res.models.get(model_name) else {
            return err(format!("unknown model \"{model_name}\""));
        };
        if features.len() != m.features.len() {
            return err(format!(
                "model \"{model_name}\" takes {} features ({}), got {}",
                m.features.len(),
                m.features.join(", "),
                features.len()
            ));
        }
        let mut nodes = Vec::with_capacity(features.len());
        for (f, fname) in features.iter().zip(&m.features) {
            let (n, t) = self.compile(f)?;
            if !(t.numeric() || matches!(t, Type::Bool | Type::Null)) {
                return err(format!(
                    "feature \"{fname}\" of model \"{model_name}\" must be a number or bool, got {}",
                    t.name()
                ));
            }
            nodes.push(n);
        }
        Ok((Node::Score(Shared(m.clone()), nodes), Type::Float))
    }
}

fn string_literal<'e>(e: &'e IdedExpr, what: &str) -> Result<&'e str, ExprError> {
    match &e.expr {
        CelExpr::Literal(CelVal::String(s)) => Ok(s.inner()),
        _ => err(format!("{what} must be a string literal")),
    }
}

fn node_type(n: &Node, t: Type) -> Type {
    match n {
        Node::Lit(l) => l.ty(),
        _ => t,
    }
}

struct EmptyScope;
impl Scope for EmptyScope {
    fn lookup(&self, _: &str) -> Option<(usize, Type)> {
        None
    }
}

/// Total-enough comparison of two values; `None` when incomparable or null.
pub fn compare(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Float(_) | Val::Int(_), Val::Float(_) | Val::Int(_)) => {
            a.as_f64()?.partial_cmp(&b.as_f64()?)
        }
        (Val::Str(x), Val::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Ts(x), Val::Ts(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// `a c b`; `None` when either is null or they cannot be compared. Strings are tested
/// for (in)equality without ordering them, floats without the numeric conversions.
#[inline]
fn comparison(c: CmpOp, a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    match (c, a, b) {
        (CmpOp::Eq, Val::Str(x), Val::Str(y)) => Some(same_bytes(x.as_bytes(), y.as_bytes())),
        (CmpOp::Ne, Val::Str(x), Val::Str(y)) => Some(!same_bytes(x.as_bytes(), y.as_bytes())),
        (_, Val::Float(x), Val::Float(y)) => x.partial_cmp(y).map(|o| c.test(o)),
        _ => compare(a, b).map(|o| c.test(o)),
    }
}

/// Whether `a c b` is true (not when null or incomparable).
#[inline]
fn holds(c: CmpOp, a: &Val<'_>, b: &Val<'_>) -> bool {
    comparison(c, a, b) == Some(true)
}

/// A row's value in `slot` by reference (null when out of range).
#[inline]
fn column<'r, 'a>(row: &'r [Val<'a>], slot: usize) -> &'r Val<'a> {
    row.get(slot).unwrap_or(&Val::Null)
}

fn eval<'a>(n: &'a Node, row: &[Val<'a>]) -> Val<'a> {
    match n {
        Node::Lit(l) => l.val(),
        Node::Col(i) => row.get(*i).cloned().unwrap_or(Val::Null),
        Node::Not(x) => match eval(x, row) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Null,
        },
        Node::Neg(x) => match eval(x, row) {
            Val::Int(i) => i.checked_neg().map_or(Val::Null, Val::Int),
            Val::Float(f) => Val::Float(-f),
            _ => Val::Null,
        },
        Node::And(a, b) => match eval(a, row) {
            Val::Bool(false) => Val::Bool(false),
            l => match (l, eval(b, row)) {
                (_, Val::Bool(false)) => Val::Bool(false),
                (Val::Bool(true), Val::Bool(true)) => Val::Bool(true),
                _ => Val::Null,
            },
        },
        Node::Or(a, b) => match eval(a, row) {
            Val::Bool(true) => Val::Bool(true),
            l => match (l, eval(b, row)) {
                (_, Val::Bool(true)) => Val::Bool(true),
                (Val::Bool(false), Val::Bool(false)) => Val::Bool(false),
                _ => Val::Null,
            },
        },
        Node::Cmp(c, a, b) => {
            // Columns are compared in place, without copying their values.
            let o = match (&**a, &**b) {
                (Node::Col(i), Node::Col(j)) => comparison(*c, column(row, *i), column(row, *j)),
                (Node::Col(i), Node::Lit(l)) => comparison(*c, column(row, *i), &l.val()),
                _ => comparison(*c, &eval(a, row), &eval(b, row)),
            };
            o.map_or(Val::Null, Val::Bool)
        }
        Node::IsNull(x, negate) => Val::Bool(matches!(eval(x, row), Val::Null) != *negate),
        Node::In(x, lits) => {
            let v = eval(x, row);
            if matches!(v, Val::Null) {
                return Val::Null;
            }
            Val::Bool(
                lits.iter()
                    .any(|l| compare(&v, &l.val()) == Some(Ordering::Equal)),
            )
        }
        Node::Cond(c, a, b) => match eval(c, row) {
            Val::Bool(true) => eval(a, row),
            Val::Bool(false) => eval(b, row),
            _ => Val::Null,
        },
        Node::Arith(o, k, a, b) => arith(*o, *k, eval(a, row), eval(b, row)),
        Node::Call(f, ty, args) => call(*f, *ty, args, row),
        Node::Lookup(table, column, key) => match eval(key, row) {
            Val::Str(k) => table
                .0
                .get(&k, *column)
                .map_or(Val::Null, |v| Val::Str(Cow::Borrowed(v))),
            _ => Val::Null,
        },
        Node::Score(model, features) => {
            let mut x: SmallVec<[f64; 16]> = SmallVec::with_capacity(features.len());
            for f in features {
                match eval(f, row) {
                    Val::Bool(b) => x.push(f64::from(u8::from(b))),
                    v => match v.as_f64() {
                        Some(v) => x.push(v),
                        None => return Val::Null,
                    },
                }
            }
            Val::Float(model.0.score(&x))
        }
        Node::Sentiment(text) => match eval(text, row) {
            Val::Str(t) => Val::Float(crate::resources::sentiment(&t)),
            _ => Val::Null,
        },
    }
}

fn arith<'a>(o: ArOp, k: ArKind, a: Val<'a>, b: Val<'a>) -> Val<'a> {
    match k {
        ArKind::Int | ArKind::TsInt | ArKind::TsTs => {
            let (x, y) = match (&a, &b) {
                (Val::Int(x) | Val::Ts(x), Val::Int(y) | Val::Ts(y)) => (*x, *y),
                _ => return Val::Null,
            };
            let r = match o {
                ArOp::Add => x.checked_add(y),
                ArOp::Sub => x.checked_sub(y),
                ArOp::Mul => x.checked_mul(y),
                ArOp::Div => x.checked_div(y),
                ArOp::Rem => x.checked_rem(y),
            };
            match (r, k) {
                (Some(v), ArKind::TsInt) => Val::Ts(v),
                (Some(v), _) => Val::Int(v),
                (None, _) => Val::Null,
            }
        }
        ArKind::Float => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Val::Null;
            };
            let r = match o {
                ArOp::Add => x + y,
                ArOp::Sub => x - y,
                ArOp::Mul => x * y,
                ArOp::Div => x / y,
                ArOp::Rem => x % y,
            };
            if r.is_finite() {
                Val::Float(r)
            } else {
                Val::Null
            }
        }
    }
}

fn call<'a>(f: Func, ty: Type, args: &'a [Node], row: &[Val<'a>]) -> Val<'a> {
    let arg = |i: usize| args.get(i).map_or(Val::Null, |n| eval(n, row));
    let num = |v: Val<'a>| -> Val<'a> {
        // Coerce to the call's numeric result type.
        match (ty, v) {
            (Type::Float, Val::Int(i)) => Val::Float(i as f64),
            (_, v) => v,
        }
    };
    match f {
        Func::Abs => match arg(0) {
            Val::Int(i) => i.checked_abs().map_or(Val::Null, Val::Int),
            Val::Float(x) => Val::Float(x.abs()),
            _ => Val::Null,
        },
        Func::Min | Func::Max => {
            let mut best = Val::Null;
            for i in 0..args.len() {
                let v = num(arg(i));
                if matches!(v, Val::Null) {
                    return Val::Null;
                }
                let better = match compare(&v, &best) {
                    None => true,
                    Some(o) => (f == Func::Min) == (o == Ordering::Less) && o != Ordering::Equal,
                };
                if better {
                    best = v;
                }
            }
            best
        }
        Func::Clamp => {
            let (x, lo, hi) = (num(arg(0)), num(arg(1)), num(arg(2)));
            match (compare(&x, &lo), compare(&x, &hi)) {
                (Some(Ordering::Less), _) => lo,
                (_, Some(Ordering::Greater)) => hi,
                (Some(_), Some(_)) => x,
                _ => Val::Null,
            }
        }
        Func::Round | Func::Floor | Func::Ceil => match arg(0).as_f64() {
            Some(x) => Val::Float(match f {
                Func::Round => x.round(),
                Func::Floor => x.floor(),
                _ => x.ceil(),
            }),
            None => Val::Null,
        },
        Func::Hour => match arg(0) {
            Val::Ts(ms) => Val::Int(ms.rem_euclid(86_400_000) / 3_600_000),
            _ => Val::Null,
        },
        Func::Lower | Func::Upper => match arg(0) {
            Val::Str(s) => {
                let needs = if f == Func::Lower {
                    s.chars().any(char::is_uppercase)
                } else {
                    s.chars().any(char::is_lowercase)
                };
                if !needs {
                    Val::Str(s)
                } else if f == Func::Lower {
                    Val::Str(Cow::Owned(s.to_lowercase()))
                } else {
                    Val::Str(Cow::Owned(s.to_uppercase()))
                }
            }
            _ => Val::Null,
        },
        Func::Size => match arg(0) {
            Val::Str(s) => Val::Int(s.chars().count() as i64),
            _ => Val::Null,
        },
        Func::Contains | Func::StartsWith | Func::EndsWith => match (arg(0), arg(1)) {
            (Val::Str(s), Val::Str(p)) => Val::Bool(match f {
                Func::Contains => s.contains(p.as_ref()),
                Func::StartsWith => s.starts_with(p.as_ref()),
                _ => s.ends_with(p.as_ref()),
            }),
            _ => Val::Null,
        },
        Func::ToInt => match arg(0) {
            Val::Int(i) | Val::Ts(i) => Val::Int(i),
            Val::Float(x) if x.is_finite() && x.abs() < 9.2e18 => Val::Int(x.trunc() as i64),
            Val::Bool(b) => Val::Int(i64::from(b)),
            Val::Str(s) => crate::types::parse_int(&s).map_or(Val::Null, Val::Int),
            _ => Val::Null,
        },
        Func::ToFloat => match arg(0) {
            Val::Int(i) | Val::Ts(i) => Val::Float(i as f64),
            Val::Float(x) => Val::Float(x),
            Val::Str(s) => parse_float(&s).map_or(Val::Null, Val::Float),
            _ => Val::Null,
        },
        Func::ToStr => match arg(0) {
            Val::Null => Val::Null,
            Val::Str(s) => Val::Str(s),
            Val::Int(i) => Val::Str(Cow::Owned(i.to_string())),
            Val::Float(x) => Val::Str(Cow::Owned(x.to_string())),
            Val::Bool(b) => Val::Str(Cow::Borrowed(if b { "true" } else { "false" })),
            Val::Ts(t) => Val::Str(Cow::Owned(crate::types::format_ts(t))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Vec<(String, Type)> {
        [
            ("amount", Type::Float),
            ("n", Type::Int),
            ("country", Type::Str),
            ("home_country", Type::Str),
            ("ok", Type::Bool),
            ("ts", Type::Ts),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b))
        .collect()
    }

    /// `src` compiled over [`scope`]'s columns, as an expression or as a condition.
    fn compile(src: &str, condition: bool) -> Result<Expr, ExprError> {
        let names = scope();
        let s = ListScope {
            names: &names,
            kind: "column",
        };
        match condition {
            true => Expr::compile_condition(src, &s),
            false => Expr::compile(src, &s),
        }
    }

    fn run(src: &str, row: &[Val<'_>]) -> Result<String, ExprError> {
        Ok(format!("{:?}", compile(src, false)?.eval(row)))
    }

    fn row() -> Vec<Val<'static>> {
        vec![
            Val::Float(6000.5),
            Val::Int(3),
            Val::Str("FR".into()),
            Val::Str("US".into()),
            Val::Bool(true),
            Val::Ts(1_000),
        ]
    }

    #[test]
    fn evaluates() {
        let r = row();
        let cases = [
            ("amount > 5000", "Bool(true)"),
            ("amount > 5000 && country == \"FR\"", "Bool(true)"),
            ("country != home_country", "Bool(true)"),
            ("!(n >= 3) || ok", "Bool(true)"),
            ("n * 2 + 1", "Int(7)"),
            ("n / 0", "Null"),
            ("amount * 2", "Float(12001.0)"),
            ("n / 2.0", "Float(1.5)"),
            ("country in [\"FR\", \"DE\"]", "Bool(true)"),
            ("n in [1, 2]", "Bool(false)"),
            ("abs(-n)", "Int(3)"),
            ("max(n, 10)", "Int(10)"),
            ("min(amount, 10)", "Float(10.0)"),
            ("clamp(amount, 0, 100)", "Float(100.0)"),
            ("lower(country) == \"fr\"", "Bool(true)"),
            ("country.startsWith(\"F\")", "Bool(true)"),
            ("size(country)", "Int(2)"),
            ("ok ? 1 : 2", "Int(1)"),
            ("country == null", "Bool(false)"),
            ("ts < \"1970-01-01T00:00:02Z\"", "Bool(true)"),
            ("ts - ts", "Int(0)"),
            ("hour(ts)", "Int(0)"),
            ("ts.getHours() < 6", "Bool(true)"),
        ];
        for (src, want) in cases {
            assert_eq!(run(src, &r).unwrap(), want, "{src}");
        }
    }

    #[test]
    fn nulls_are_three_valued() {
        let r = vec![Val::Null, Val::Null, Val::Null, Val::Str("US".into())];
        assert_eq!(run("amount > 5", &r).unwrap(), "Null");
        assert_eq!(run("amount > 5 && false", &r).unwrap(), "Bool(false)");
        assert_eq!(run("amount > 5 || true", &r).unwrap(), "Bool(true)");
        assert_eq!(run("country == null", &r).unwrap(), "Bool(true)");
        assert_eq!(run("country != home_country", &r).unwrap(), "Null");
    }

    #[test]
    fn comparisons_agree_with_the_general_order() {
        // `matches` and `eval` compare columns (and int literals against floats) on their
        // own fast paths: they must give what the general ordering `compare` gives.
        let floats = [
            Val::Null,
            Val::Float(5000.0),
            Val::Float(-0.5),
            Val::Float(f64::NAN),
        ];
        let strings = [
            Val::Null,
            Val::Str("FR".into()),
            Val::Str("F".into()),
            Val::Str("US".into()),
        ];
        for (op, cmp) in [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
        ] {
            let by_literal = compile(&format!("amount {op} 5000"), true).unwrap();
            for a in &floats {
                let mut r = row();
                r[0] = a.clone();
                let want = compare(a, &Val::Int(5000)).map(|o| cmp.test(o));
                assert_eq!(
                    by_literal.eval(&r),
                    want.map_or(Val::Null, Val::Bool),
                    "{a:?} {op}"
                );
                assert_eq!(by_literal.matches(&r), want == Some(true), "{a:?} {op}");
            }
            let columns = compile(&format!("country {op} home_country"), true).unwrap();
            for a in &strings {
                for b in &strings {
                    let mut r = row();
                    (r[2], r[3]) = (a.clone(), b.clone());
                    let want = compare(a, b).map(|o| cmp.test(o));
                    assert_eq!(columns.eval(&r), want.map_or(Val::Null, Val::Bool));
                    assert_eq!(columns.matches(&r), want == Some(true), "{a:?} {op} {b:?}");
                }
            }
        }
    }

    #[test]
    fn type_errors() {
        let r = row();
        let cases = [
            ("amout > 5", "unknown column \"amout\""),
            ("country > 5", "cannot compare string with int"),
            ("country + 1", "cannot apply arithmetic to string and int"),
            ("foo(amount)", "unknown function \"foo\""),
            ("amount &&", "syntax error"),
            ("ok && n", "must be bool"),
            ("n in [\"a\"]", "does not match"),
            ("a.b", "unknown column \"a.b\""),
            ("prev.n", "only available in window rules"),
            ("n.b.c", "field selection"),
        ];
        for (src, want) in cases {
            let e = run(src, &r).unwrap_err().to_string();
            assert!(e.contains(want), "{src}: {e}");
            assert!(!e.contains('\n'), "{src}: {e}");
        }
        assert!(compile("amount + 1", true).is_err());
    }
}
