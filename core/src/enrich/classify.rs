//! Classifiers: exporter and interface rules in Akvorado's expression
//! language (expr-lang, through the `expr-lang` crate), so that rules pasted
//! from an Akvorado configuration classify the same way.
//!
//! A rule is an expression that returns a boolean; its functions set the
//! classification (`ClassifySite("par")`, `ClassifyExternal()`,
//! `SetName(...)`, `Reject()`). Rules run in order on each exporter (and
//! each interface) the control plane resolves, never per flow; the first
//! value set wins, the rules stop once everything is set, and a rule that
//! fails at run time stops its list (counted). `Classify*` values are
//! normalised (lower case, only `a-z 0-9 . + -`), `Set*` values are not.
//!
//! Exporter rules see `Exporter.IP` and `Exporter.Name`; interface rules
//! also see `Interface.Index`, `.Name`, `.Description`, `.Speed` (Mbps) and
//! `.VLAN` (always 0 here: Weir classifies an interface once, not per
//! flow). Rules are checked when the configuration loads: syntax, every
//! function and variable they name, every field of `Exporter` and
//! `Interface`, every regex given as a literal.

use std::cell::RefCell;
use std::collections::HashMap;

use expr::{Context, Environment, Program, Value};
use regex::Regex;

use super::metadata::Boundary;

/// What exporter rules set (or what was set before them, by the static
/// provider: a value already set is kept).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExporterClass {
    pub group: String,
    pub role: String,
    pub site: String,
    pub region: String,
    pub tenant: String,
    pub rejected: bool,
}

impl ExporterClass {
    fn complete(&self) -> bool {
        self.rejected || [&self.group, &self.role, &self.site, &self.region, &self.tenant].iter().all(|v| !v.is_empty())
    }
}

/// What interface rules set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InterfaceClass {
    pub provider: String,
    pub connectivity: String,
    pub boundary: Boundary,
    /// `SetName`, `SetDescription`: None keeps the polled or static one.
    pub name: Option<String>,
    pub description: Option<String>,
    pub rejected: bool,
}

impl InterfaceClass {
    fn complete(&self) -> bool {
        self.rejected
            || (!self.provider.is_empty() && !self.connectivity.is_empty() && self.boundary != Boundary::Undefined)
    }
}

/// An interface as its rules see it.
#[derive(Clone, Debug, Default)]
pub struct InterfaceFacts<'a> {
    pub index: u32,
    pub name: &'a str,
    pub description: &'a str,
    pub speed: u32,
}

/// A rule that failed at run time: which list, which rule, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub kind: RuleKind,
    pub index: usize,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    Exporter,
    Interface,
}

impl RuleKind {
    pub fn label(self) -> &'static str {
        match self {
            RuleKind::Exporter => "exporter",
            RuleKind::Interface => "interface",
        }
    }

    /// Functions a rule of this kind may call (besides expr's own).
    fn functions(self) -> &'static [&'static str] {
        match self {
            RuleKind::Exporter => EXPORTER_FUNCTIONS,
            RuleKind::Interface => INTERFACE_FUNCTIONS,
        }
    }

    /// Variables a rule of this kind sees, and their fields.
    fn fields(self, variable: &str) -> Option<&'static [&'static str]> {
        match (self, variable) {
            (_, "Exporter") => Some(&["IP", "Name"]),
            (RuleKind::Interface, "Interface") => Some(&["Index", "Name", "Description", "Speed", "VLAN"]),
            _ => None,
        }
    }
}

const EXPORTER_FUNCTIONS: &[&str] = &[
    "Classify",
    "ClassifyGroup",
    "ClassifyRole",
    "ClassifySite",
    "ClassifyRegion",
    "ClassifyTenant",
    "ClassifyRegex",
    "ClassifyGroupRegex",
    "ClassifyRoleRegex",
    "ClassifySiteRegex",
    "ClassifyRegionRegex",
    "ClassifyTenantRegex",
    "Reject",
    "Format",
];
const INTERFACE_FUNCTIONS: &[&str] = &[
    "ClassifyProvider",
    "ClassifyConnectivity",
    "ClassifyProviderRegex",
    "ClassifyConnectivityRegex",
    "ClassifyExternal",
    "ClassifyInternal",
    "SetName",
    "SetDescription",
    "Reject",
    "Format",
];
/// expr-lang's own functions (expr-lang 2.1).
const BUILTINS: &[&str] = &[
    "abs",
    "add",
    "all",
    "any",
    "bitand",
    "bitnand",
    "bitnot",
    "bitor",
    "bitshl",
    "bitshr",
    "bitushr",
    "bitxor",
    "ceil",
    "concat",
    "count",
    "date",
    "duration",
    "filter",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "first",
    "flatten",
    "float",
    "floor",
    "fromJSON",
    "fromPairs",
    "get",
    "groupBy",
    "hasPrefix",
    "hasSuffix",
    "indexOf",
    "int",
    "join",
    "keys",
    "last",
    "lastIndexOf",
    "len",
    "lower",
    "map",
    "max",
    "mean",
    "median",
    "min",
    "none",
    "now",
    "one",
    "reduce",
    "repeat",
    "replace",
    "reverse",
    "round",
    "semver",
    "sort",
    "sortBy",
    "split",
    "splitAfter",
    "string",
    "sum",
    "take",
    "timezone",
    "toJSON",
    "toPairs",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "type",
    "uniq",
    "upper",
    "values",
];
/// Words of the language that are not variables.
const KEYWORDS: &[&str] = &[
    "true",
    "false",
    "nil",
    "and",
    "or",
    "not",
    "in",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "let",
    "if",
    "else",
    "$env",
];
/// Compiled regexes kept per thread (rules' regexes are few; one built from
/// flow data could make many: past this, the cache starts over).
const REGEXES_MAX: usize = 1024;

/// What a run of the rules is setting: the functions write here.
#[derive(Default)]
struct Scratch {
    exporter: ExporterClass,
    interface: InterfaceClass,
    regexes: HashMap<String, Regex>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Lower case, only `a-z 0-9 . + -` (Akvorado's normalisation).
pub fn normalise(value: &str) -> String {
    value
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '+' | '-'))
        .collect()
}

/// `value` in `slot` unless something is there already.
fn first_wins(slot: &mut String, value: String) {
    if slot.is_empty() {
        *slot = value;
    }
}

/// The exporter or interface attribute a `Classify*` function sets.
#[derive(Clone, Copy)]
enum Target {
    Group,
    Role,
    Site,
    Region,
    Tenant,
    Provider,
    Connectivity,
}

fn classify(target: Target, value: &str) {
    let value = normalise(value);
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        let slot = match target {
            Target::Group => &mut s.exporter.group,
            Target::Role => &mut s.exporter.role,
            Target::Site => &mut s.exporter.site,
            Target::Region => &mut s.exporter.region,
            Target::Tenant => &mut s.exporter.tenant,
            Target::Provider => &mut s.interface.provider,
            Target::Connectivity => &mut s.interface.connectivity,
        };
        first_wins(slot, value);
    });
}

fn string_arg(args: &[Value], i: usize, function: &str) -> expr::Result<String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Integer(n)) => Ok(n.to_string()),
        Some(Value::Nil) => Ok(String::new()),
        Some(other) => {
            Err(expr::Error::ExprError(format!("{function}: argument {} is not a string: {other:?}", i + 1)))
        }
        None => Err(expr::Error::ExprError(format!("{function}: argument {} is missing", i + 1))),
    }
}

/// `template` expanded with what `regex` captures in `input` (`$1`,
/// `${name}`), or None when it does not match.
fn expand(input: &str, regex: &str, template: &str) -> expr::Result<Option<String>> {
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        if !s.regexes.contains_key(regex) {
            if s.regexes.len() >= REGEXES_MAX {
                s.regexes.clear();
            }
            let compiled = Regex::new(regex).map_err(|e| expr::Error::ExprError(format!("regex {regex:?}: {e}")))?;
            s.regexes.insert(regex.to_string(), compiled);
        }
        let Some(captures) = s.regexes[regex].captures(input) else { return Ok(None) };
        let mut out = String::new();
        captures.expand(template, &mut out);
        Ok(Some(out))
    })
}

/// Go's `fmt.Sprintf` for what rules use: `%s`, `%d`, `%v`, `%q`, `%%`.
pub fn format(template: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'd' | 'v' | 'q')) => match args.next() {
                Some(Value::String(s)) if verb == 'q' => out.push_str(&format!("{s:?}")),
                Some(Value::String(s)) => out.push_str(s),
                Some(Value::Integer(n)) => out.push_str(&n.to_string()),
                Some(Value::Float(f)) => out.push_str(&f.to_string()),
                Some(Value::Bool(b)) => out.push_str(&b.to_string()),
                Some(Value::Nil) => out.push_str("<nil>"),
                Some(other) => out.push_str(&other.to_string()),
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let targets = [
        ("Classify", "ClassifyRegex", Target::Group),
        ("ClassifyGroup", "ClassifyGroupRegex", Target::Group),
        ("ClassifyRole", "ClassifyRoleRegex", Target::Role),
        ("ClassifySite", "ClassifySiteRegex", Target::Site),
        ("ClassifyRegion", "ClassifyRegionRegex", Target::Region),
        ("ClassifyTenant", "ClassifyTenantRegex", Target::Tenant),
        ("ClassifyProvider", "ClassifyProviderRegex", Target::Provider),
        ("ClassifyConnectivity", "ClassifyConnectivityRegex", Target::Connectivity),
    ];
    for (name, regex_name, target) in targets {
        env.add_function(name, move |c| {
            classify(target, &string_arg(&c.args, 0, name)?);
            Ok(Value::Bool(true))
        });
        env.add_function(regex_name, move |c| {
            let (input, regex) = (string_arg(&c.args, 0, regex_name)?, string_arg(&c.args, 1, regex_name)?);
            let template = string_arg(&c.args, 2, regex_name)?;
            match expand(&input, &regex, &template)? {
                Some(value) => {
                    classify(target, &value);
                    Ok(Value::Bool(true))
                }
                None => Ok(Value::Bool(false)),
            }
        });
    }
    for (name, boundary) in [("ClassifyExternal", Boundary::External), ("ClassifyInternal", Boundary::Internal)] {
        env.add_function(name, move |_| {
            SCRATCH.with(|s| {
                let b = &mut s.borrow_mut().interface.boundary;
                if *b == Boundary::Undefined {
                    *b = boundary;
                }
            });
            Ok(Value::Bool(true))
        });
    }
    for name in ["SetName", "SetDescription"] {
        env.add_function(name, move |c| {
            let value = string_arg(&c.args, 0, name)?;
            SCRATCH.with(|s| {
                let i = &mut s.borrow_mut().interface;
                let slot = if name == "SetName" { &mut i.name } else { &mut i.description };
                slot.get_or_insert(value);
            });
            Ok(Value::Bool(true))
        });
    }
    env.add_function("Reject", |_| {
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            s.exporter.rejected = true;
            s.interface.rejected = true;
        });
        Ok(Value::Bool(false))
    });
    env.add_function("Format", |c| {
        let template = string_arg(&c.args, 0, "Format")?;
        Ok(Value::String(format(&template, c.args.get(1..).unwrap_or(&[]))))
    });
    env
}

struct Rule {
    program: Program,
}

/// The configured rules, compiled.
pub struct Classifiers {
    exporter: Vec<Rule>,
    interface: Vec<Rule>,
    env: Environment<'static>,
}

impl Classifiers {
    /// Compiles and checks the rules; an error names the rule (`exporter
    /// rule 2: ...`).
    pub fn new(exporter: &[String], interface: &[String]) -> Result<Classifiers, RuleError> {
        let compile = |kind: RuleKind, rules: &[String]| -> Result<Vec<Rule>, RuleError> {
            rules
                .iter()
                .enumerate()
                .map(|(index, text)| {
                    check(kind, text).map(|program| Rule { program }).map_err(|message| RuleError {
                        kind,
                        index,
                        message,
                    })
                })
                .collect()
        };
        Ok(Classifiers {
            exporter: compile(RuleKind::Exporter, exporter)?,
            interface: compile(RuleKind::Interface, interface)?,
            env: environment(),
        })
    }

    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        self.exporter.is_empty() && self.interface.is_empty()
    }

    /// Runs the exporter rules on (`ip`, `name`) from `preset` (what the
    /// static provider set); the classification, and the rule that failed
    /// if one did (the rules before it still count).
    pub fn exporter(&self, ip: &str, name: &str, preset: ExporterClass) -> (ExporterClass, Option<RuleError>) {
        let mut ctx = Context::default();
        ctx.insert("Exporter", exporter_value(ip, name));
        SCRATCH.with(|s| s.borrow_mut().exporter = preset);
        let error = self.run(RuleKind::Exporter, &self.exporter, &ctx, |s| s.exporter.complete());
        (SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().exporter)), error)
    }

    /// Runs the interface rules on an interface of exporter (`ip`, `name`).
    pub fn interface(
        &self,
        ip: &str,
        name: &str,
        facts: &InterfaceFacts,
        preset: InterfaceClass,
    ) -> (InterfaceClass, Option<RuleError>) {
        let mut ctx = Context::default();
        ctx.insert("Exporter", exporter_value(ip, name));
        let mut i = expr::__private::IndexMap::new();
        i.insert("Index".to_string(), Value::Integer(i64::from(facts.index)));
        i.insert("Name".to_string(), Value::String(facts.name.to_string()));
        i.insert("Description".to_string(), Value::String(facts.description.to_string()));
        i.insert("Speed".to_string(), Value::Integer(i64::from(facts.speed)));
        i.insert("VLAN".to_string(), Value::Integer(0));
        ctx.insert("Interface", Value::Map(i));
        SCRATCH.with(|s| s.borrow_mut().interface = preset);
        let error = self.run(RuleKind::Interface, &self.interface, &ctx, |s| s.interface.complete());
        (SCRATCH.with(|s| std::mem::take(&mut s.borrow_mut().interface)), error)
    }

    fn run(&self, kind: RuleKind, rules: &[Rule], ctx: &Context, done: impl Fn(&Scratch) -> bool) -> Option<RuleError> {
        for (index, rule) in rules.iter().enumerate() {
            if SCRATCH.with(|s| done(&s.borrow())) {
                return None;
            }
            let message = match guarded(|| self.env.run(&rule.program, ctx)) {
                Some(Ok(Value::Bool(_))) => continue,
                Some(Ok(other)) => format!("returned {other:?}, not a boolean"),
                Some(Err(e)) => e.to_string(),
                None => "the expression evaluator panicked".to_string(),
            };
            return Some(RuleError { kind, index, message });
        }
        None
    }
}

/// `f`, or None if it panicked: expr-lang has inputs its grammar accepts
/// and its parser does not handle (`{a: [1, 2]}.a[0]` reaches an
/// `unreachable!`), and a rule must not take the control thread down.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

fn exporter_value(ip: &str, name: &str) -> Value {
    let mut e = expr::__private::IndexMap::new();
    e.insert("IP".to_string(), Value::String(ip.to_string()));
    e.insert("Name".to_string(), Value::String(name.to_string()));
    Value::Map(e)
}

/// A token of a rule, as far as checking needs.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    Ident(&'a str),
    Str(String),
    Punct(char),
}

/// Splits a rule into identifiers, string literals (unescaped) and
/// punctuation; numbers and operators' symbols are punctuation or skipped.
fn tokens(text: &str) -> Result<Vec<Token<'_>>, String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            let quote = c;
            let mut value = String::new();
            let mut j = i + 1;
            loop {
                let Some(&b) = bytes.get(j) else { return Err("a string is not closed".into()) };
                if b == quote {
                    break;
                }
                if b == b'\\' && quote != b'`' {
                    let Some(&e) = bytes.get(j + 1) else { return Err("a string is not closed".into()) };
                    value.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        other => other as char,
                    });
                    j += 2;
                    continue;
                }
                let ch = text[j..].chars().next().unwrap_or('\u{fffd}');
                value.push(ch);
                j += ch.len_utf8();
            }
            out.push(Token::Str(value));
            i = j + 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'#' {
            let start = i;
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token::Ident(&text[start..i]));
        } else if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.') {
                i += 1;
            }
        } else {
            if !c.is_ascii_whitespace() {
                out.push(Token::Punct(c as char));
            }
            i += 1;
        }
    }
    Ok(out)
}

/// Compiles one rule and checks what the compiler does not: the functions
/// it calls, the variables and fields it reads, the regexes it gives as
/// literals.
pub fn check(kind: RuleKind, text: &str) -> Result<Program, String> {
    let program = guarded(|| expr::compile(text))
        .ok_or("the expression parser failed on this rule (expr-lang panicked)")?
        .map_err(|e| e.to_string())?;
    let tokens = tokens(text)?;
    let mut declared: Vec<&str> = Vec::new();
    let is_builtin = |name: &str| BUILTINS.contains(&name);
    for (i, token) in tokens.iter().enumerate() {
        let Token::Ident(name) = token else { continue };
        let before = i.checked_sub(1).and_then(|j| tokens.get(j));
        let after = tokens.get(i + 1);
        let member = matches!(before, Some(Token::Punct('.')));
        let call = matches!(after, Some(Token::Punct('(')));
        if member {
            let owner = i.checked_sub(2).and_then(|j| tokens.get(j));
            if call {
                if !is_builtin(name) {
                    return Err(format!("unknown method {name}()"));
                }
            } else if let Some(Token::Ident(owner)) = owner {
                if let Some(fields) = kind.fields(owner) {
                    if !fields.contains(name) {
                        return Err(format!("{owner} has no field {name} (it has {})", fields.join(", ")));
                    }
                }
            }
            continue;
        }
        if call {
            if !kind.functions().contains(name) && !is_builtin(name) {
                let known = kind.functions().join(", ");
                return Err(format!("unknown function {name}() (a {} rule can call {known})", kind.label()));
            }
            if name.ends_with("Regex") && kind.functions().contains(name) {
                check_regex_argument(&tokens[i + 1..])?;
            }
            continue;
        }
        if matches!(before, Some(Token::Ident("let"))) {
            declared.push(name);
            continue;
        }
        if *name == "matches" {
            if let Some(Token::Str(regex)) = after {
                Regex::new(regex).map_err(|e| format!("regex {regex:?}: {e}"))?;
            }
            continue;
        }
        // A map key: `{key: value}`.
        if matches!(after, Some(Token::Punct(':'))) && matches!(before, Some(Token::Punct('{' | ','))) {
            continue;
        }
        if KEYWORDS.contains(name) || name.starts_with('#') || declared.contains(name) || kind.fields(name).is_some() {
            continue;
        }
        return Err(format!("unknown variable {name}"));
    }
    Ok(program)
}

/// The second argument of a `...Regex(input, regex, template)` call, if a
/// literal, must compile. `args` starts at the call's `(`.
fn check_regex_argument(args: &[Token]) -> Result<(), String> {
    let mut depth = 0;
    let mut commas = 0;
    for (j, t) in args.iter().enumerate() {
        match t {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            Token::Punct(',') if depth == 1 => commas += 1,
            Token::Str(regex) if depth == 1 && commas == 1 => {
                let whole = matches!(args.get(j + 1), Some(Token::Punct(',' | ')')));
                if whole {
                    Regex::new(regex).map_err(|e| format!("regex {regex:?}: {e}"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    /// The examples of Akvorado's configuration documentation give the
    /// results it documents.
    #[test]
    fn akvorado_documentation_examples_classify_as_documented() {
        let c = Classifiers::new(
            &rules(&[
                r#"ClassifySiteRegex(Exporter.Name, "^([^-]+)-", "$1")"#,
                r#"Exporter.Name endsWith ".it" && ClassifyRegion("italy")"#,
                r#"Exporter.Name matches "^(washington|newyork).*" && ClassifyRegion("usa")"#,
                r#"Exporter.Name endsWith ".fr" && ClassifyRegion("france")"#,
            ]),
            &rules(&[
                r#"ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ppni|ix):? ", "$1") && ClassifyProviderRegex(Interface.Description, "^\\S+?\\s(\\S+)", "$1") && ClassifyExternal()"#,
                r#"ClassifyInternal()"#,
            ]),
        )
        .unwrap();
        let (e, error) = c.exporter("192.0.2.1", "milan-edge1.it", ExporterClass::default());
        assert_eq!(error, None);
        assert_eq!((e.site.as_str(), e.region.as_str()), ("milan", "italy"));
        let (e, _) = c.exporter("192.0.2.2", "newyork-edge1.fr", ExporterClass::default());
        assert_eq!(e.region, "usa", "the first value set wins");
        let facts =
            InterfaceFacts { index: 17, name: "et-0/0/17", description: "Transit: Cogent 1-38", speed: 100_000 };
        let (i, _) = c.interface("192.0.2.1", "milan-edge1.it", &facts, InterfaceClass::default());
        assert_eq!(
            (i.connectivity.as_str(), i.provider.as_str(), i.boundary),
            ("transit", "cogent", Boundary::External)
        );
        let facts = InterfaceFacts { index: 3, name: "et-3", description: "core link", speed: 400_000 };
        let (i, _) = c.interface("192.0.2.1", "milan-edge1.it", &facts, InterfaceClass::default());
        assert_eq!((i.connectivity.as_str(), i.boundary), ("", Boundary::Internal));
        // PNI with a colon-less description; IX.
        let facts = InterfaceFacts { description: "PNI Netflix", ..facts };
        let (i, _) = c.interface("192.0.2.1", "x", &facts, InterfaceClass::default());
        assert_eq!((i.connectivity.as_str(), i.provider.as_str()), ("pni", "netflix"));
    }

    #[test]
    fn static_values_stay_set_names_are_kept_as_given_and_reject_is_final() {
        let c = Classifiers::new(
            &rules(&[
                r#"ClassifyTenant("Acme Corp!") && ClassifySite("never")"#,
                r#"Exporter.IP startsWith "198.51.100." && Reject()"#,
            ]),
            &rules(&[
                r#"Interface.Speed >= 100000 && SetName(Format("%s (%d G)", Interface.Name, Interface.Speed / 1000))"#,
                r#"SetDescription("Uplink: " + Interface.Description)"#,
                r#"Interface.Index == 666 && Reject()"#,
            ]),
        )
        .unwrap();
        let preset = ExporterClass { site: "par".into(), ..ExporterClass::default() };
        let (e, _) = c.exporter("192.0.2.1", "edge1", preset);
        assert_eq!((e.tenant.as_str(), e.site.as_str(), e.rejected), ("acmecorp", "par", false));
        assert!(c.exporter("198.51.100.7", "anti-ddos", ExporterClass::default()).0.rejected);
        let facts = InterfaceFacts { index: 1, name: "et-1", description: "Core", speed: 400_000 };
        let (i, _) = c.interface("192.0.2.1", "edge1", &facts, InterfaceClass::default());
        assert_eq!(i.name.as_deref(), Some("et-1 (400 G)"));
        assert_eq!(i.description.as_deref(), Some("Uplink: Core"));
        assert!(!i.rejected);
        let facts = InterfaceFacts { index: 666, ..facts };
        assert!(c.interface("192.0.2.1", "edge1", &facts, InterfaceClass::default()).0.rejected);
    }

    #[test]
    fn a_failing_rule_stops_its_list_and_says_which() {
        let c = Classifiers::new(
            &rules(&[r#"ClassifySite("par")"#, r#"int(Exporter.Name) > 3"#, r#"ClassifyRole("edge")"#]),
            &[],
        )
        .unwrap();
        let (e, error) = c.exporter("192.0.2.1", "edge1", ExporterClass::default());
        assert_eq!((e.site.as_str(), e.role.as_str()), ("par", ""));
        let error = error.unwrap();
        assert_eq!((error.kind, error.index), (RuleKind::Exporter, 1));
        let c = Classifiers::new(&rules(&[r#"Exporter.Name"#]), &[]).unwrap();
        assert!(c
            .exporter("192.0.2.1", "edge1", ExporterClass::default())
            .1
            .unwrap()
            .message
            .contains("not a boolean"));
    }

    #[test]
    fn bad_rules_are_refused_at_load_naming_the_rule() {
        let bad = [
            (RuleKind::Exporter, r#"ClassifySite("par""#, ""),
            (RuleKind::Exporter, r#"ClassifyProvider("x")"#, "unknown function ClassifyProvider"),
            (RuleKind::Exporter, r#"Exporter.Nmae == "x" && ClassifySite("a")"#, "no field Nmae"),
            (RuleKind::Exporter, r#"Interface.Name == "x""#, "unknown variable Interface"),
            (RuleKind::Interface, r#"Interface.Vlan == 3"#, "no field Vlan"),
            (RuleKind::Interface, r#"Exporter.Name matches "([" && Reject()"#, "regex"),
            (RuleKind::Interface, r#"ClassifyProviderRegex(Interface.Description, "(unclosed", "$1")"#, "regex"),
            (RuleKind::Interface, r#"Name == "x""#, "unknown variable Name"),
            (RuleKind::Interface, r#"Exporter.Name.frobnicate()"#, "unknown method"),
        ];
        for (kind, rule, says) in bad {
            let (e, i) = match kind {
                RuleKind::Exporter => (rules(&["true", rule]), vec![]),
                RuleKind::Interface => (vec![], rules(&["true", rule])),
            };
            let error = Classifiers::new(&e, &i).err().unwrap_or_else(|| panic!("{rule} passed"));
            assert_eq!((error.kind, error.index), (kind, 1), "{rule}");
            assert!(error.message.contains(says), "{rule}: {}", error.message);
        }
        let error = Classifiers::new(&rules(&[r#"{a: [1, 2]}.a[0] == 1"#]), &[]).err().unwrap();
        assert!(error.message.contains("panicked"), "a parser panic is an error: {}", error.message);
        let good = [
            r#"let n = lower(Exporter.Name); n startsWith "th2" && ClassifySite("th2")"#,
            r#"Exporter.IP in ["192.0.2.1", "192.0.2.2"] && ClassifyRegion('x')"#,
            r#"Exporter.Name.upper() contains "EDGE" ? ClassifyRole("edge") : ClassifyRole("core")"#,
            r#"{a: 1}.a == 1"#,
        ];
        for rule in good {
            assert!(Classifiers::new(&rules(&[rule]), &[]).is_ok(), "{rule}");
        }
    }

    #[test]
    fn normalise_and_format_follow_akvorado() {
        assert_eq!(normalise("Telehouse North 2!"), "telehousenorth2");
        assert_eq!(normalise("ae1.100+x-Y"), "ae1.100+x-y");
        let args = [Value::String("et-1".into()), Value::Integer(100)];
        assert_eq!(format("%s.%d %% %q %s", &args), "et-1.100 % %!q(MISSING) %!s(MISSING)");
    }
}
