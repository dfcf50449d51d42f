//! The subset of Go templates (with the sprig helpers) that Oathkeeper rules use in mutators
//! and authorizers, compiled once when a rule loads and rendered per request without failing.
//!
//! Supported: text with `{{ }}` actions and `{{-`/`-}}` trimming; fields from the dot
//! (`.Subject`, `.Extra.identity.traits.email`, `.MatchContext.RegexpCaptureGroups`,
//! `.MatchContext.Header.Get "X-Name"`), `$` for the root, string/number/bool literals,
//! parenthesised pipelines and `|` pipelines; `if`/`else if`/`else`/`with`/`end`; the
//! functions `print`, `printf`, `printIndex`, `index`, `default`, `quote`, `squote`, `toJson`,
//! `upper`, `lower`, `trim`, `join`, `len`, `eq`, `ne`, `and`, `or`, `not`, `empty`,
//! `contains`, `hasPrefix`, `hasSuffix`.
//!
//! Null-safe by design: a missing field is empty (or its `default`), never Oathkeeper's
//! "nil pointer evaluating interface {}.traits" error; lists and objects render as JSON, not
//! Go's `[a b]`. Unknown functions, bad syntax and wrong arities are compile errors with the
//! byte offset. There is deliberately no `env`: a rule must not read the gateway's environment.

use std::cell::Cell;
use std::fmt;

use serde_json::{Map, Value};

/// The most bytes one render may produce, its intermediate values included. Each `quote`
/// doubles the backslashes before it and `join` multiplies a separator by a list, so a short
/// template could otherwise ask for gigabytes on every request.
pub const MAX_RENDERED: usize = 256 * 1024;

/// A render that would produce more than [`MAX_RENDERED`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the template renders more than {MAX_RENDERED} bytes")
    }
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

/// What a template is rendered against: the authenticated session and the request.
pub struct Context<'a> {
    pub subject: &'a str,
    pub extra: &'a Map<String, Value>,
    pub captures: &'a [String],
    /// Request headers, names lower-cased.
    pub headers: &'a [(&'a str, &'a str)],
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Output(Pipeline),
    If { branches: Vec<(Pipeline, Vec<Node>)>, otherwise: Vec<Node> },
    With { pipeline: Pipeline, body: Vec<Node>, otherwise: Vec<Node> },
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Call(Func, Vec<Operand>),
    Value(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// A field chain from the dot (`.A.B`) or from the root (`$.A.B`); empty chain = the value itself.
    Field {
        root: bool,
        path: Vec<String>,
    },
    /// `.X.Get "name"`: a case-insensitive lookup in a header map.
    HeaderGet {
        root: bool,
        path: Vec<String>,
        name: String,
    },
    Literal(Value),
    Nested(Pipeline),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Print,
    Printf,
    PrintIndex,
    Index,
    Default,
    Quote,
    Squote,
    ToJson,
    Upper,
    Lower,
    Trim,
    Join,
    Len,
    Eq,
    Ne,
    And,
    Or,
    Not,
    Empty,
    Contains,
    HasPrefix,
    HasSuffix,
}

impl Func {
    fn parse(name: &str) -> Option<Func> {
        Some(match name {
            "print" => Func::Print,
            "printf" => Func::Printf,
            "printIndex" => Func::PrintIndex,
            "index" => Func::Index,
            "default" => Func::Default,
            "quote" => Func::Quote,
            "squote" => Func::Squote,
            "toJson" => Func::ToJson,
            "upper" => Func::Upper,
            "lower" => Func::Lower,
            "trim" => Func::Trim,
            "join" => Func::Join,
            "len" => Func::Len,
            "eq" => Func::Eq,
            "ne" => Func::Ne,
            "and" => Func::And,
            "or" => Func::Or,
            "not" => Func::Not,
            "empty" => Func::Empty,
            "contains" => Func::Contains,
            "hasPrefix" => Func::HasPrefix,
            "hasSuffix" => Func::HasSuffix,
            _ => return None,
        })
    }

    /// Allowed argument counts, pipeline input included.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Print | Func::And | Func::Or => (1, usize::MAX),
            Func::Printf => (1, usize::MAX),
            Func::Index => (2, usize::MAX),
            Func::PrintIndex | Func::Default | Func::Join | Func::Eq | Func::Ne => (2, 2),
            Func::Contains | Func::HasPrefix | Func::HasSuffix => (2, 2),
            Func::Quote | Func::Squote | Func::ToJson | Func::Upper | Func::Lower | Func::Trim => (1, 1),
            Func::Len | Func::Not | Func::Empty => (1, 1),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(bool, Vec<String>),
    Ident(String),
    Str(String),
    Number(Value),
    Pipe,
    Open,
    Close,
}

fn tokenize(src: &str) -> Result<Vec<Token>, String> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            b'(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b'"' | b'`' => {
                let (s, len) = string_literal(&src[i..])?;
                tokens.push(Token::Str(s));
                i += len;
            }
            b'.' | b'$' => {
                let root = c == b'$';
                let start = i;
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.') {
                    i += 1;
                }
                let text = &src[start + usize::from(root)..i];
                let path: Vec<String> = if text.is_empty() || text == "." {
                    Vec::new()
                } else {
                    let inner = text.strip_prefix('.').ok_or_else(|| format!("unexpected {:?}", &src[start..i]))?;
                    inner.split('.').map(str::to_owned).collect()
                };
                if path.iter().any(String::is_empty) {
                    return Err(format!("empty field name in {:?}", &src[start..i]));
                }
                tokens.push(Token::Field(root, path));
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let text = &src[start..i];
                let number = text
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| text.parse::<f64>().map(Value::from))
                    .map_err(|_| format!("invalid number {text:?}"))?;
                tokens.push(Token::Number(number));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                tokens.push(Token::Ident(src[start..i].to_owned()));
            }
            _ => return Err(format!("unexpected character {:?}", char::from(c))),
        }
    }
    Ok(tokens)
}

/// Reads a Go string literal ("..." with escapes, or `raw`); returns it and its length in bytes.
fn string_literal(src: &str) -> Result<(String, usize), String> {
    let mut chars = src.char_indices();
    let Some((_, quote)) = chars.next() else {
        return Err("expected a string".into());
    };
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, i + 1)),
            '\\' if quote == '"' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, other)) => return Err(format!("unsupported escape \\{other}")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut commands = vec![self.command()?];
        while self.peek() == Some(&Token::Pipe) {
            self.pos += 1;
            commands.push(self.command()?);
        }
        for (i, command) in commands.iter().enumerate() {
            if let Command::Call(func, args) = command {
                let given = args.len() + usize::from(i > 0);
                let (min, max) = func.arity();
                if given < min || given > max {
                    return Err(format!("{func:?} takes {min}..{max} arguments, got {given}").to_lowercase());
                }
            } else if i > 0 {
                return Err("only a function can follow '|'".into());
            }
        }
        Ok(commands)
    }

    fn command(&mut self) -> Result<Command, String> {
        match self.peek().cloned() {
            Some(Token::Ident(name)) => {
                if let Some(func) = Func::parse(&name) {
                    self.pos += 1;
                    let mut args = Vec::new();
                    while let Some(operand) = self.operand()? {
                        args.push(operand);
                    }
                    return Ok(Command::Call(func, args));
                }
                let operand = self.operand()?.ok_or_else(|| format!("unknown function {name:?}"))?;
                Ok(Command::Value(operand))
            }
            _ => {
                let operand = self.operand()?.ok_or("expected a value")?;
                if matches!(self.peek(), Some(Token::Ident(_) | Token::Field(..) | Token::Str(_) | Token::Number(_))) {
                    return Err("a value cannot take arguments".into());
                }
                Ok(Command::Value(operand))
            }
        }
    }

    fn operand(&mut self) -> Result<Option<Operand>, String> {
        let Some(token) = self.peek().cloned() else {
            return Ok(None);
        };
        let operand = match token {
            Token::Field(root, mut path) => {
                self.pos += 1;
                if path.last().map(String::as_str) == Some("Get") {
                    path.pop();
                    let Some(Token::Str(name)) = self.peek().cloned() else {
                        return Err("Get needs a quoted header name".into());
                    };
                    self.pos += 1;
                    Operand::HeaderGet { root, path, name: name.to_ascii_lowercase() }
                } else {
                    Operand::Field { root, path }
                }
            }
            Token::Str(s) => {
                self.pos += 1;
                Operand::Literal(Value::String(s))
            }
            Token::Number(n) => {
                self.pos += 1;
                Operand::Literal(n)
            }
            Token::Ident(name) => match name.as_str() {
                "true" | "false" => {
                    self.pos += 1;
                    Operand::Literal(Value::Bool(name == "true"))
                }
                "nil" => {
                    self.pos += 1;
                    Operand::Literal(Value::Null)
                }
                _ if Func::parse(&name).is_some() => {
                    return Err(format!("{name} must be in parentheses here"));
                }
                _ => return Err(format!("unknown function {name:?}")),
            },
            Token::Open => {
                self.pos += 1;
                let inner = self.pipeline()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Operand::Nested(inner)
            }
            Token::Pipe | Token::Close => return Ok(None),
        };
        Ok(Some(operand))
    }
}

fn parse_pipeline(src: &str) -> Result<Pipeline, String> {
    let mut parser = Parser { tokens: tokenize(src)?, pos: 0 };
    if parser.tokens.is_empty() {
        return Err("empty action".into());
    }
    let pipeline = parser.pipeline()?;
    if parser.pos != parser.tokens.len() {
        return Err("unexpected input after the pipeline".into());
    }
    Ok(pipeline)
}

enum Action {
    Pipeline(Pipeline),
    If(Pipeline),
    ElseIf(Pipeline),
    With(Pipeline),
    Else,
    End,
}

fn parse_action(src: &str) -> Result<Action, String> {
    let word = src.split_whitespace().next().unwrap_or("");
    let rest = src.trim_start()[word.len()..].trim();
    Ok(match word {
        "if" => Action::If(parse_pipeline(rest)?),
        "with" => Action::With(parse_pipeline(rest)?),
        "else" if rest.is_empty() => Action::Else,
        "else" => match rest.strip_prefix("if ") {
            Some(cond) => Action::ElseIf(parse_pipeline(cond)?),
            None => return Err("expected `else` or `else if`".into()),
        },
        "end" if rest.is_empty() => Action::End,
        "range" | "define" | "template" | "block" => {
            return Err(format!("`{word}` is not supported"));
        }
        _ => Action::Pipeline(parse_pipeline(src)?),
    })
}

impl Template {
    /// Compiles template source; an error names the byte offset of the offending action.
    pub fn compile(source: &str) -> Result<Self, String> {
        // (offset, action) pairs and text between them, trimming applied.
        let mut items: Vec<(usize, Result<String, String>)> = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("template: action at byte {} is not closed with }}}}", offset + open))?;
            let mut inner = &after[..close];
            let mut text = &rest[..open];
            if let Some(stripped) = inner.strip_prefix('-') {
                inner = stripped;
                text = text.trim_end();
            }
            let trim_next = inner.ends_with('-') && !inner.ends_with("--");
            if trim_next {
                inner = &inner[..inner.len() - 1];
            }
            if !text.is_empty() {
                items.push((offset, Ok(text.to_owned())));
            }
            items.push((offset + open, Err(inner.trim().to_owned())));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
            if trim_next {
                let trimmed = rest.trim_start();
                offset += rest.len() - trimmed.len();
                rest = trimmed;
            }
        }
        if !rest.is_empty() {
            items.push((offset, Ok(rest.to_owned())));
        }
        let mut iter = items.into_iter();
        let (nodes, terminator) = build(&mut iter, false)?;
        if let Some((at, _)) = terminator {
            return Err(format!("template: action at byte {at}: unexpected {{{{ end }}}} or {{{{ else }}}}"));
        }
        Ok(Self { nodes })
    }

    /// The rendered text; a missing value renders empty. Fails only when the output, or any
    /// value computed on the way, would pass [`MAX_RENDERED`] bytes.
    pub fn render(&self, ctx: &Context<'_>) -> Result<String, TooLarge> {
        let mut out = String::new();
        let root = Scope { ctx, spent: Cell::new(0) };
        render_nodes(&self.nodes, &root, &Val::Root, &mut out);
        if root.exhausted() { Err(TooLarge) } else { Ok(out) }
    }
}

enum Terminator {
    Else,
    ElseIf(Pipeline),
    End,
}

type Items = std::vec::IntoIter<(usize, Result<String, String>)>;
/// Nodes built so far, and the `else`/`end` that stopped the build (with its byte offset).
type Built = (Vec<Node>, Option<(usize, Terminator)>);

/// Builds nodes until an `else`/`end` (returned with its offset) or the end of input.
/// `in_with`: the dot is not the root, so field names cannot be checked.
fn build(items: &mut Items, in_with: bool) -> Result<Built, String> {
    let mut nodes = Vec::new();
    while let Some((at, item)) = items.next() {
        let action = match item {
            Ok(text) => {
                nodes.push(Node::Text(text));
                continue;
            }
            Err(action) => parse_action(&action)
                .and_then(|a| check_action(&a, in_with).map(|()| a))
                .map_err(|e| format!("template: action at byte {at}: {e}"))?,
        };
        match action {
            Action::Pipeline(p) => nodes.push(Node::Output(p)),
            Action::Else => return Ok((nodes, Some((at, Terminator::Else)))),
            Action::ElseIf(p) => return Ok((nodes, Some((at, Terminator::ElseIf(p))))),
            Action::End => return Ok((nodes, Some((at, Terminator::End)))),
            Action::If(cond) => {
                let mut branches = Vec::new();
                let mut cond = cond;
                let otherwise = loop {
                    let (body, term) = build(items, in_with)?;
                    branches.push((cond, body));
                    match term {
                        Some((_, Terminator::End)) => break Vec::new(),
                        Some((_, Terminator::ElseIf(next))) => cond = next,
                        Some((_, Terminator::Else)) => break expect_end(items, at, in_with)?,
                        None => {
                            return Err(format!("template: action at byte {at}: `if` has no {{{{ end }}}}"));
                        }
                    }
                };
                nodes.push(Node::If { branches, otherwise });
            }
            Action::With(pipeline) => {
                let (body, term) = build(items, true)?;
                let otherwise = match term {
                    Some((_, Terminator::End)) => Vec::new(),
                    Some((_, Terminator::Else)) => expect_end(items, at, in_with)?,
                    _ => {
                        return Err(format!("template: action at byte {at}: `with` has no {{{{ end }}}}"));
                    }
                };
                nodes.push(Node::With { pipeline, body, otherwise });
            }
        }
    }
    Ok((nodes, None))
}

fn expect_end(items: &mut Items, at: usize, in_with: bool) -> Result<Vec<Node>, String> {
    match build(items, in_with)? {
        (body, Some((_, Terminator::End))) => Ok(body),
        _ => Err(format!("template: action at byte {at}: `else` has no {{{{ end }}}}")),
    }
}

/// Rejects field names the root does not have (`.Subjekt`), so a typo fails when the rule
/// loads instead of rendering empty forever.
fn check_action(action: &Action, in_with: bool) -> Result<(), String> {
    match action {
        Action::Pipeline(p) | Action::If(p) | Action::ElseIf(p) | Action::With(p) => check_pipeline(p, in_with),
        Action::Else | Action::End => Ok(()),
    }
}

fn check_pipeline(pipeline: &Pipeline, in_with: bool) -> Result<(), String> {
    for command in pipeline {
        let operands: &[Operand] = match command {
            Command::Call(_, args) => args,
            Command::Value(operand) => std::slice::from_ref(operand),
        };
        for operand in operands {
            match operand {
                Operand::Field { root, path } | Operand::HeaderGet { root, path, .. } if *root || !in_with => {
                    check_root_path(path)?
                }
                Operand::Nested(p) => check_pipeline(p, in_with)?,
                _ => {}
            }
        }
    }
    Ok(())
}

const ROOT_FIELDS: &str = ".Subject, .Extra, .MatchContext.RegexpCaptureGroups, .MatchContext.Header";

fn check_root_path(path: &[String]) -> Result<(), String> {
    let known = match path.first().map(String::as_str) {
        None | Some("Subject" | "Extra") => true,
        Some("MatchContext") => {
            matches!(path.get(1).map(String::as_str), None | Some("RegexpCaptureGroups" | "Header"))
        }
        Some(_) => false,
    };
    if known { Ok(()) } else { Err(format!("unknown field .{} (available: {ROOT_FIELDS})", path.join("."))) }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

struct Scope<'c, 'a> {
    ctx: &'c Context<'a>,
    /// Bytes produced so far, output and intermediate values alike.
    spent: Cell<usize>,
}

impl Scope<'_, '_> {
    /// Counts `bytes` more against [`MAX_RENDERED`].
    fn charge(&self, bytes: usize) {
        self.spent.set(self.spent.get().saturating_add(bytes));
    }

    /// Past the budget: evaluation stops and the render fails.
    fn exhausted(&self) -> bool {
        self.spent.get() > MAX_RENDERED
    }
}

/// A value during evaluation, borrowed from the context where possible.
#[derive(Debug, Clone)]
enum Val<'a> {
    /// The root object: `.Subject`, `.Extra`, `.MatchContext`.
    Root,
    MatchContext,
    Headers,
    Captures,
    Map(&'a Map<String, Value>),
    Ref(&'a Value),
    Own(Value),
    Str(&'a str),
    Nil,
}

impl<'a> Val<'a> {
    fn field(&self, scope: &Scope<'_, 'a>, name: &str) -> Val<'a> {
        let ctx = scope.ctx;
        match self {
            Val::Root => match name {
                "Subject" => Val::Str(ctx.subject),
                "Extra" => Val::Map(ctx.extra),
                "MatchContext" => Val::MatchContext,
                _ => Val::Nil,
            },
            Val::MatchContext => match name {
                "RegexpCaptureGroups" => Val::Captures,
                "Header" => Val::Headers,
                _ => Val::Nil,
            },
            Val::Map(m) => m.get(name).map_or(Val::Nil, Val::Ref),
            Val::Ref(v) => v.get(name).map_or(Val::Nil, Val::Ref),
            Val::Own(v) => v.get(name).cloned().map_or(Val::Nil, Val::Own),
            _ => Val::Nil,
        }
    }

    fn to_value(&self, scope: &Scope<'_, 'a>) -> Value {
        match self {
            Val::Root => serde_json::json!({
                "Subject": scope.ctx.subject,
                "Extra": scope.ctx.extra,
                "MatchContext": Val::MatchContext.to_value(scope),
            }),
            Val::MatchContext => serde_json::json!({
                "RegexpCaptureGroups": scope.ctx.captures,
                "Header": Val::Headers.to_value(scope),
            }),
            Val::Headers => {
                let mut map = Map::new();
                for (n, v) in scope.ctx.headers {
                    if let Value::Array(list) = map.entry(*n).or_insert_with(|| Value::Array(Vec::new())) {
                        list.push(Value::String((*v).to_owned()));
                    }
                }
                Value::Object(map)
            }
            Val::Captures => Value::from(scope.ctx.captures.to_vec()),
            Val::Map(m) => Value::Object((*m).clone()),
            Val::Ref(v) => (*v).clone(),
            Val::Own(v) => v.clone(),
            Val::Str(s) => Value::String((*s).to_owned()),
            Val::Nil => Value::Null,
        }
    }

    fn is_truthy(&self, scope: &Scope<'_, 'a>) -> bool {
        match self {
            Val::Root | Val::MatchContext => true,
            Val::Headers => !scope.ctx.headers.is_empty(),
            Val::Captures => !scope.ctx.captures.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Str(s) => !s.is_empty(),
            Val::Nil => false,
            Val::Ref(v) => truthy(v),
            Val::Own(v) => truthy(v),
        }
    }

    fn render(&self, scope: &Scope<'_, 'a>, out: &mut String) {
        match self {
            Val::Str(s) => out.push_str(s),
            Val::Nil => {}
            Val::Ref(v) => push_value(out, v),
            Val::Own(v) => push_value(out, v),
            other => push_value(out, &other.to_value(scope)),
        }
    }

    fn text(&self, scope: &Scope<'_, 'a>) -> String {
        let mut s = String::new();
        self.render(scope, &mut s);
        s
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push_str(s),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        other => out.push_str(&other.to_string()),
    }
}

fn render_nodes<'a>(nodes: &[Node], scope: &Scope<'_, 'a>, dot: &Val<'a>, out: &mut String) {
    for node in nodes {
        if scope.exhausted() {
            return;
        }
        match node {
            Node::Text(t) => {
                scope.charge(t.len());
                out.push_str(t);
            }
            Node::Output(p) => {
                let before = out.len();
                eval_pipeline(p, scope, dot).render(scope, out);
                scope.charge(out.len() - before);
            }
            Node::If { branches, otherwise } => {
                let body = branches
                    .iter()
                    .find(|(cond, _)| eval_pipeline(cond, scope, dot).is_truthy(scope))
                    .map_or(otherwise, |(_, body)| body);
                render_nodes(body, scope, dot, out);
            }
            Node::With { pipeline, body, otherwise } => {
                let value = eval_pipeline(pipeline, scope, dot);
                if value.is_truthy(scope) {
                    render_nodes(body, scope, &value, out);
                } else {
                    render_nodes(otherwise, scope, dot, out);
                }
            }
        }
    }
}

fn eval_pipeline<'a>(pipeline: &Pipeline, scope: &Scope<'_, 'a>, dot: &Val<'a>) -> Val<'a> {
    let mut input: Option<Val<'a>> = None;
    for command in pipeline {
        let value = match command {
            Command::Value(operand) => eval_operand(operand, scope, dot),
            Command::Call(func, args) => {
                let mut values: Vec<Val<'a>> = args.iter().map(|a| eval_operand(a, scope, dot)).collect();
                if let Some(previous) = input.take() {
                    values.push(previous);
                }
                call(*func, values, scope)
            }
        };
        input = Some(value);
    }
    input.unwrap_or(Val::Nil)
}

fn eval_operand<'a>(operand: &Operand, scope: &Scope<'_, 'a>, dot: &Val<'a>) -> Val<'a> {
    match operand {
        Operand::Literal(v) => Val::Own(v.clone()),
        Operand::Nested(p) => eval_pipeline(p, scope, dot),
        Operand::Field { root, path } => walk(if *root { &Val::Root } else { dot }, path, scope),
        Operand::HeaderGet { root, path, name } => match walk(if *root { &Val::Root } else { dot }, path, scope) {
            Val::Headers => scope.ctx.headers.iter().find(|(n, _)| n == name).map_or(Val::Nil, |(_, v)| Val::Str(v)),
            other => match other.to_value(scope) {
                Value::Object(map) => map
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| match v {
                        Value::Array(list) => list.first().cloned().unwrap_or(Value::Null),
                        v => v.clone(),
                    })
                    .map_or(Val::Nil, Val::Own),
                _ => Val::Nil,
            },
        },
    }
}

fn walk<'a>(start: &Val<'a>, path: &[String], scope: &Scope<'_, 'a>) -> Val<'a> {
    let mut current = start.clone();
    for name in path {
        current = current.field(scope, name);
        if matches!(current, Val::Nil) {
            break;
        }
    }
    current
}

fn call<'a>(func: Func, args: Vec<Val<'a>>, scope: &Scope<'_, 'a>) -> Val<'a> {
    if scope.exhausted() {
        return Val::Nil;
    }
    let value = apply(func, args, scope);
    if let Val::Own(Value::String(s)) = &value {
        scope.charge(s.len());
    }
    if scope.exhausted() { Val::Nil } else { value }
}

fn apply<'a>(func: Func, mut args: Vec<Val<'a>>, scope: &Scope<'_, 'a>) -> Val<'a> {
    let text = |v: &Val<'a>| v.text(scope);
    let string = |s: String| Val::Own(Value::String(s));
    match func {
        Func::Print => string(args.iter().map(text).collect()),
        Func::Printf => {
            let format = args.first().map(text).unwrap_or_default();
            string(printf(&format, &args[1.min(args.len())..], scope))
        }
        Func::PrintIndex => {
            let i = args.get(1).and_then(|v| v.to_value(scope).as_u64());
            match (args[0].to_value(scope), i) {
                (Value::Array(list), Some(i)) => {
                    list.get(usize::try_from(i).unwrap_or(usize::MAX)).cloned().map_or(Val::Nil, Val::Own)
                }
                _ => Val::Nil,
            }
        }
        Func::Index => {
            let mut current = args[0].to_value(scope);
            for key in &args[1..] {
                current = match (current, key.to_value(scope)) {
                    (Value::Array(list), Value::Number(n)) => {
                        n.as_u64().and_then(|i| list.get(usize::try_from(i).ok()?).cloned()).unwrap_or(Value::Null)
                    }
                    (Value::Object(map), Value::String(k)) => map.get(&k).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
            }
            Val::Own(current)
        }
        Func::Default => {
            let given = args.pop().unwrap_or(Val::Nil);
            if given.is_truthy(scope) { given } else { args.pop().unwrap_or(Val::Nil) }
        }
        Func::Quote => string(Value::String(text(&args[0])).to_string()),
        Func::Squote => string(format!("'{}'", text(&args[0]))),
        Func::ToJson => string(args[0].to_value(scope).to_string()),
        Func::Upper => string(text(&args[0]).to_uppercase()),
        Func::Lower => string(text(&args[0]).to_lowercase()),
        Func::Trim => string(text(&args[0]).trim().to_owned()),
        Func::Join => {
            let sep = text(&args[0]);
            let joined = match args[1].to_value(scope) {
                // The separator times the list, counted before it is built.
                Value::Array(list) if sep.len().saturating_mul(list.len()) > MAX_RENDERED => {
                    scope.charge(sep.len().saturating_mul(list.len()));
                    return Val::Nil;
                }
                Value::Array(list) => list.iter().map(|v| Val::Ref(v).text(scope)).collect::<Vec<_>>().join(&sep),
                other => Val::Own(other).text(scope),
            };
            string(joined)
        }
        Func::Len => Val::Own(Value::from(match args[0].to_value(scope) {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            Value::String(s) => s.chars().count(),
            _ => 0,
        })),
        Func::Eq => Val::Own(Value::Bool(args[0].to_value(scope) == args[1].to_value(scope))),
        Func::Ne => Val::Own(Value::Bool(args[0].to_value(scope) != args[1].to_value(scope))),
        Func::And => {
            let falsy = args.iter().position(|a| !a.is_truthy(scope));
            match falsy {
                Some(i) => args.swap_remove(i),
                None => args.pop().unwrap_or(Val::Nil),
            }
        }
        Func::Or => {
            let truthy = args.iter().position(|a| a.is_truthy(scope));
            match truthy {
                Some(i) => args.swap_remove(i),
                None => args.pop().unwrap_or(Val::Nil),
            }
        }
        Func::Not => Val::Own(Value::Bool(!args[0].is_truthy(scope))),
        Func::Empty => Val::Own(Value::Bool(!args[0].is_truthy(scope))),
        Func::Contains => Val::Own(Value::Bool(text(&args[1]).contains(&text(&args[0])))),
        Func::HasPrefix => Val::Own(Value::Bool(text(&args[1]).starts_with(&text(&args[0])))),
        Func::HasSuffix => Val::Own(Value::Bool(text(&args[1]).ends_with(&text(&args[0])))),
    }
}

/// Go's `printf` verbs that rule templates use: `%s %v %d %q %%`.
fn printf<'a>(format: &str, args: &[Val<'a>], scope: &Scope<'_, 'a>) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'v' | 'd' | 'q')) => match args.next() {
                Some(arg) if verb == 'q' => out.push_str(&Value::String(arg.text(scope)).to_string()),
                Some(arg) => arg.render(scope, &mut out),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, subject: &str, extra: Value) -> String {
        let extra = extra.as_object().cloned().unwrap_or_default();
        let headers = vec![("x-tenant", "acme")];
        let captures = vec!["a".to_owned(), "42".to_owned()];
        Template::compile(src)
            .unwrap()
            .render(&Context { subject, extra: &extra, captures: &captures, headers: &headers })
            .unwrap()
    }

    #[test]
    fn output_that_would_grow_without_bound_is_refused() {
        // Found by the `template` fuzz target: each `quote` escapes the quotes and backslashes
        // of the one before, so the output doubled per `quote` (24 in a 200-byte template:
        // ~100 MB per request), and `join` multiplies its separator by a list.
        let extra = json!({"list": vec!["x"; 1000]}).as_object().cloned().unwrap();
        let ctx = Context { subject: "a\"b", extra: &extra, captures: &[], headers: &[] };
        let quoted = format!("{{{{ .Subject{} }}}}", " | quote".repeat(24));
        assert_eq!(Template::compile(&quoted).unwrap().render(&ctx), Err(TooLarge));
        let joined = r#"{{ join (join "-----" .Extra.list) .Extra.list }}"#;
        assert_eq!(Template::compile(joined).unwrap().render(&ctx), Err(TooLarge));
        let printed = format!("{{{{ print {} }}}}", "(join .Subject .Extra.list) ".repeat(200));
        assert_eq!(Template::compile(&printed).unwrap().render(&ctx), Err(TooLarge));
        // Up to the limit, output is whole.
        let eight = format!("{{{{ .Subject{} }}}}", " | quote".repeat(8));
        assert!(Template::compile(&eight).unwrap().render(&ctx).is_ok_and(|o| o.len() > 500));
        let big = "y".repeat(MAX_RENDERED);
        assert_eq!(Template::compile(&big).unwrap().render(&ctx).map(|o| o.len()), Ok(MAX_RENDERED));
    }

    #[test]
    fn renders_subject_extra_captures_and_headers() {
        assert_eq!(render("{{ print .Subject }}", "my-client", json!({})), "my-client");
        assert_eq!(render("user:{{.Subject}}!", "u1", json!({})), "user:u1!");
        assert_eq!(
            render("{{ .Extra.identity.traits.email }}", "u", json!({"identity": {"traits": {"email": "a@b.c"}}})),
            "a@b.c"
        );
        assert_eq!(render("{{ printIndex .MatchContext.RegexpCaptureGroups 1 }}", "u", json!({})), "42");
        assert_eq!(render("{{ index .MatchContext.RegexpCaptureGroups 0 }}", "u", json!({})), "a");
        assert_eq!(render("{{ .MatchContext.RegexpCaptureGroups }}", "u", json!({})), r#"["a","42"]"#);
        assert_eq!(render(r#"{{ .MatchContext.Header.Get "X-Tenant" }}"#, "u", json!({})), "acme");
    }

    #[test]
    fn missing_values_render_empty_instead_of_failing() {
        // Oathkeeper fails here with "nil pointer evaluating interface {}.traits".
        assert_eq!(render("[{{ print .Extra.identity.traits.email }}]", "anonymous", json!({})), "[]");
        assert_eq!(render("[{{ .Extra.identity.traits.email }}]", "anonymous", json!({"identity": null})), "[]");
        assert_eq!(render("{{ printIndex .MatchContext.RegexpCaptureGroups 9 }}", "u", json!({})), "");
        assert_eq!(render("{{ .Extra.nope.deeper }}", "u", json!({})), "");
    }

    #[test]
    fn pipelines_defaults_and_functions() {
        assert_eq!(render(r#"{{ .Extra.email | default "nobody" }}"#, "u", json!({})), "nobody");
        assert_eq!(render(r#"{{ default "nobody" .Extra.email }}"#, "u", json!({"email": "e@x"})), "e@x");
        assert_eq!(render(r#"{{ printf "%s/%d" .Subject .Extra.n }}"#, "u", json!({"n": 7})), "u/7");
        assert_eq!(render("{{ .Subject | quote }}", "a\"b", json!({})), r#""a\"b""#);
        assert_eq!(render("{{ .Extra | toJson }}", "u", json!({"k": [1, 2]})), r#"{"k":[1,2]}"#);
        assert_eq!(render(r#"{{ join "," .Extra.roles }}"#, "u", json!({"roles": ["a", "b"]})), "a,b");
        assert_eq!(render("{{ .Subject | upper }}-{{ len .Extra.roles }}", "u", json!({"roles": [1]})), "U-1");
        assert_eq!(render(r#"{{ (print .Subject "!") | lower }}"#, "U", json!({})), "u!");
    }

    #[test]
    fn conditionals_and_with() {
        let t = r#"{{ if .Extra.admin }}admin{{ else if eq .Subject "guest" }}guest{{ else }}user{{ end }}"#;
        assert_eq!(render(t, "u", json!({"admin": true})), "admin");
        assert_eq!(render(t, "guest", json!({})), "guest");
        assert_eq!(render(t, "u", json!({"admin": false})), "user");
        let w = "{{ with .Extra.identity.traits }}{{ .email }}{{ else }}none{{ end }}";
        assert_eq!(render(w, "u", json!({"identity": {"traits": {"email": "e"}}})), "e");
        assert_eq!(render(w, "u", json!({})), "none");
        assert_eq!(render("{{ with .Extra.a }}{{ $.Subject }}{{ end }}", "root", json!({"a": 1})), "root");
        assert_eq!(render("a  {{- .Subject -}}  b", "x", json!({})), "axb");
    }

    #[test]
    fn lists_render_as_json() {
        assert_eq!(render("{{ .Extra.aud }}", "u", json!({"aud": ["a", "b"]})), r#"["a","b"]"#);
        assert_eq!(render("{{ .Extra.n }}/{{ .Extra.ok }}", "u", json!({"n": 3, "ok": true})), "3/true");
    }

    #[test]
    fn compile_errors_give_the_position() {
        let cases = [
            ("abc {{ nosuch .Subject }}", "byte 4"),
            ("{{ .Subject ", "not closed"),
            ("{{ }}", "empty action"),
            ("{{ if .Subject }}x", "has no {{ end }}"),
            ("x{{ end }}", "unexpected"),
            ("{{ env \"HOME\" }}", "unknown function"),
            ("{{ printIndex .X }}", "arguments"),
            ("{{ range .X }}{{ end }}", "not supported"),
            ("{{ \"unterminated }}", "unterminated"),
            ("{{ .Subjekt }}", "unknown field .Subjekt"),
            ("{{ .MatchContext.Nope }}", "unknown field"),
        ];
        for (src, expected) in cases {
            let err = Template::compile(src).unwrap_err();
            assert!(err.contains(expected), "{src}: {err}");
        }
    }
}
