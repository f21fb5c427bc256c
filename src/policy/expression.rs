//! The CEL adapter: compiles an expression once (refusing unknown variables and oversized
//! programs), and runs it over [`Facts`]: off the async workers within a time bound (flows),
//! or inline on the calling thread (the access decision, see [`Expression::evaluate_inline`]).

use super::{Facts, PolicyError};
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use std::sync::Arc;
use std::time::{Duration, Instant};

thread_local! {
    /// A CEL context holding only the standard functions, built once per thread (building it
    /// registers every function); each evaluation adds its variables in a child scope.
    static STDLIB: cel::Context<'static, 'static> = cel::Context::default();
}

/// The longest expression source accepted.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// The most AST nodes a program may have.
const MAX_NODES: usize = 1000;
/// How deeply comprehensions (`exists`, `all`, `map`, `filter`) may nest: each level
/// multiplies the work by the size of a list.
const MAX_COMPREHENSION_DEPTH: usize = 2;
/// How deep the syntax tree may be: the interpreter recurses once per level.
const MAX_DEPTH: usize = 48;
/// The stack the parser runs on: it recurses per nesting level of the source, and a source of
/// [`MAX_EXPRESSION_BYTES`] may nest that deep before the tree's depth can be checked.
const PARSE_STACK: usize = 512 << 20;
/// The stack each evaluation runs on (the tree is at most [`MAX_DEPTH`] deep).
const EVAL_STACK: usize = 16 << 20;
/// The stack one level of the tree may take in the interpreter, with room to spare: an
/// unoptimised build was measured at under 44 KiB a level (a chain of `+` calls, the
/// hungriest), an optimised one takes far less.
const STACK_PER_LEVEL: usize = 64 << 10;
/// Stack kept free below an inline run besides its levels (the context, the call into it).
const STACK_BASE: usize = 128 << 10;
/// The variables an expression may name.
const ROOTS: [&str; 4] = ["user", "request", "flow", "time"];

/// A compiled CEL program.
#[derive(Clone)]
pub struct Expression {
    source: String,
    program: Arc<cel::Program>,
    reads_country: bool,
    /// The tree's depth, for the stack an inline run needs.
    depth: usize,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

impl Expression {
    /// Parses and checks `source`.
    ///
    /// # Errors
    /// [`PolicyError::Syntax`], [`PolicyError::UnknownVariable`] (a name outside `user`,
    /// `request`, `flow`, `time` and comprehension variables), [`PolicyError::TooLarge`].
    pub fn compile(source: &str) -> Result<Expression, PolicyError> {
        if source.len() > MAX_EXPRESSION_BYTES {
            return Err(PolicyError::TooLarge(format!(
                "{} bytes, at most {MAX_EXPRESSION_BYTES}",
                source.len()
            )));
        }
        // The parser recurses per nesting level: it runs on a thread with a stack deep enough
        // for any source of the allowed size, and a panic there refuses the config.
        let owned = source.to_string();
        let (program, reads_country, depth) = std::thread::Builder::new()
            .name("cel-parse".into())
            .stack_size(PARSE_STACK)
            .spawn(
                move || -> Result<(cel::Program, bool, usize), PolicyError> {
                    let program = cel::Program::compile(&owned)
                        .map_err(|e| PolicyError::Syntax(e.to_string().replace('\n', "; ")))?;
                    let mut walk = Walk::default();
                    walk.visit(program.expression(), &mut Vec::new(), 0, 0)?;
                    Ok((program, walk.reads_country(), walk.deepest))
                },
            )
            .map_err(|e| PolicyError::Syntax(format!("cannot start the parser: {e}")))?
            .join()
            .map_err(|_| PolicyError::Syntax("the parser gave up".into()))??;
        Ok(Expression {
            source: source.to_string(),
            program: Arc::new(program),
            reads_country,
            depth,
        })
    }

    /// Whether the program may read `request.country` (decided from the tree at compile time:
    /// `request.country` itself, or `request` used other than as `request.FIELD`), so the
    /// GeoIP lookup is made only for programs that need it.
    pub fn reads_country(&self) -> bool {
        self.reads_country
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program over `facts` on the blocking pool.
    ///
    /// # Errors
    /// A description of why it has no boolean answer: a runtime error, another type, a panic
    /// in the interpreter, or a run longer than `limit` (its answer is then discarded).
    pub async fn evaluate(
        &self,
        facts: &Facts,
        country: &str,
        limit: Duration,
    ) -> Result<bool, String> {
        let program = self.program.clone();
        let facts = facts.clone();
        let country = country.to_string();
        let started = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Off the async workers, on a stack sized for the deepest tree compile() lets through.
        // A run past the bound is abandoned (it ends by itself: programs are bounded).
        std::thread::Builder::new()
            .name("cel-eval".into())
            .stack_size(EVAL_STACK)
            .spawn(move || {
                let mut cx = cel::Context::default();
                for (name, value) in facts.to_values(&country) {
                    cx.add_variable_from_value(name, value);
                }
                let _ = tx.send(program.execute(&cx).map_err(|e| e.to_string()));
            })
            .map_err(|e| format!("cannot start the interpreter: {e}"))?;
        let value = match tokio::time::timeout(limit, rx).await {
            Err(_) => return Err(format!("took longer than {limit:?}")),
            Ok(Err(_)) => return Err("the interpreter failed".into()),
            Ok(Ok(result)) => result?,
        };
        if started.elapsed() > limit {
            return Err(format!("took longer than {limit:?}"));
        }
        boolean(value)
    }

    /// Runs the program over `facts` on the calling thread, for the access decision, which
    /// judges every signed-in request of an app with policies and must neither spawn a thread
    /// nor wait for one per request.
    ///
    /// # Errors
    /// As [`Expression::evaluate`]; a run longer than `limit` is only known once it ended, and
    /// its answer is then discarded (it denies).
    ///
    /// # Security
    /// The run cannot be interrupted, so its cost is bounded by construction instead. The
    /// program is bounded at load: at most [`MAX_EXPRESSION_BYTES`] of source, 1000 nodes, a
    /// tree 48 levels deep, comprehensions nested at most two deep. Its input is bounded
    /// too: what a request contributes (path, host, method, three headers) is capped by the
    /// gateway's request-header limit, and the only lists (`user.groups`,
    /// `flow.stages_passed`) come from the session the gateway signed, not from the request.
    /// So a run is at most (nodes) x (list length)^2 steps over strings of bounded size, a
    /// few microseconds for real policies (see the `rules/decide_signed_in_app_policy`
    /// bench). The interpreter recurses once per tree level (up to some 44 KiB a level
    /// unoptimised): the run checks the stack left on the calling thread against what the
    /// program's depth may need and, only when that is short, runs on a fresh 16 MiB
    /// segment of the same thread (`stacker`), so no depth the load-time bound allows can
    /// overflow a worker's stack (the test `the_deepest_programs_run_inline_on_a_small_stack`
    /// runs them all on 256 KiB). A panic in the interpreter is caught and denies.
    pub fn evaluate_inline(
        &self,
        facts: &Facts,
        country: &str,
        limit: Duration,
    ) -> Result<bool, String> {
        let started = Instant::now();
        // Shallow programs (every real policy) run on the worker's own stack; a deep one, when
        // the stack left is short of what its depth may need, on a fresh segment of this
        // thread (no thread is started).
        let need = STACK_BASE + (self.depth + 1) * STACK_PER_LEVEL;
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // The standard library's functions are registered once per thread, not per
            // request: the request's variables live in a child scope of that root.
            STDLIB.with(|root| {
                let mut cx = root.new_inner_scope();
                for (name, value) in facts.to_values(country) {
                    cx.add_variable_from_value(name, value);
                }
                stacker::maybe_grow(need, EVAL_STACK, || self.program.execute(&cx))
            })
        }));
        let value = match run {
            Err(_) => return Err("the interpreter failed".into()),
            Ok(result) => result.map_err(|e| e.to_string())?,
        };
        if started.elapsed() > limit {
            return Err(format!("took longer than {limit:?}"));
        }
        boolean(value)
    }
}

fn boolean(value: cel::Value) -> Result<bool, String> {
    match value {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("returned {:?}, not a bool", other.type_of())),
    }
}

/// Counts nodes and checks free variables and comprehension depth.
#[derive(Default)]
struct Walk {
    nodes: usize,
    /// The deepest level reached.
    deepest: usize,
    /// Free uses of `request`.
    request_uses: usize,
    /// Of those, `request.FIELD` with a field other than `country`.
    request_other_fields: usize,
}

impl Walk {
    /// Whether some use of `request` may reach `country`.
    fn reads_country(&self) -> bool {
        self.request_uses > self.request_other_fields
    }

    fn visit(
        &mut self,
        e: &IdedExpr,
        bound: &mut Vec<String>,
        depth: usize,
        level: usize,
    ) -> Result<(), PolicyError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(PolicyError::TooLarge(format!(
                "more than {MAX_NODES} nodes"
            )));
        }
        if level > MAX_DEPTH {
            return Err(PolicyError::TooLarge(format!(
                "nested more than {MAX_DEPTH} deep"
            )));
        }
        let level = level + 1;
        self.deepest = self.deepest.max(level);
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => Ok(()),
            Expr::Ident(name) => {
                if name == "request" && !bound.iter().any(|b| b == name) {
                    self.request_uses += 1;
                }
                if name.starts_with('@')
                    || ROOTS.contains(&name.as_str())
                    || bound.iter().any(|b| b == name)
                {
                    Ok(())
                } else {
                    Err(PolicyError::UnknownVariable(name.clone()))
                }
            }
            Expr::Call(call) => {
                if let Some(t) = &call.target {
                    self.visit(t, bound, depth, level)?;
                }
                call.args
                    .iter()
                    .try_for_each(|a| self.visit(a, bound, depth, level))
            }
            Expr::Select(s) => {
                if matches!(&s.operand.expr, Expr::Ident(n) if n == "request")
                    && s.field != "country"
                    && !bound.iter().any(|b| b == "request")
                {
                    self.request_other_fields += 1;
                }
                self.visit(&s.operand, bound, depth, level)
            }
            Expr::List(l) => l
                .elements
                .iter()
                .try_for_each(|a| self.visit(a, bound, depth, level)),
            Expr::Map(m) => m.entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::StructField(f) => self.visit(&f.value, bound, depth, level),
                EntryExpr::MapEntry(me) => {
                    self.visit(&me.key, bound, depth, level)?;
                    self.visit(&me.value, bound, depth, level)
                }
            }),
            Expr::Struct(s) => s.entries.iter().try_for_each(|entry| match &entry.expr {
                EntryExpr::StructField(f) => self.visit(&f.value, bound, depth, level),
                EntryExpr::MapEntry(me) => {
                    self.visit(&me.key, bound, depth, level)?;
                    self.visit(&me.value, bound, depth, level)
                }
            }),
            Expr::Comprehension(c) => {
                if depth >= MAX_COMPREHENSION_DEPTH {
                    return Err(PolicyError::TooLarge(format!(
                        "comprehensions nested more than {MAX_COMPREHENSION_DEPTH} deep"
                    )));
                }
                self.visit(&c.iter_range, bound, depth, level)?;
                self.visit(&c.accu_init, bound, depth, level)?;
                let mark = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.iter().cloned());
                bound.push(c.accu_var.clone());
                let inner = [&c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .try_for_each(|x| self.visit(x, bound, depth + 1, level));
                bound.truncate(mark);
                inner
            }
        }
    }
}
