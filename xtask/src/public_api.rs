//! `cargo xtask public-api [--bless]`: the public API of `livekit-agents` as a sorted list of
//! one-line items, compared with the committed snapshot `crates/livekit-agents/public-api.txt`.
//!
//! Rustdoc's JSON output needs a nightly toolchain, which CI machines do not have, so the list
//! comes from the source with `syn`: starting at `src/lib.rs`, every module file is parsed and
//! every item that users can name is written as one line, its signature printed from its
//! tokens (so a changed parameter, field type, variant or trait method changes the line):
//!
//! - items declared `pub` in modules reachable through `pub mod` (structs with their public
//!   fields, enums with their variants, functions, traits with their items, type aliases,
//!   constants, statics, `pub use` re-exports), with their derives, `#[non_exhaustive]` and
//!   `#[cfg(..)]` (a module's cfg applies to everything in it);
//! - public methods, associated constants and types of inherent `impl` blocks, and the trait
//!   `impl`s, wherever they are written (an `impl` in a private module still adds to a public
//!   type);
//! - `#[macro_export]` macros.
//!
//! `pub(crate)`, `pub(super)` and private items are left out, and so are `#[doc(hidden)]`
//! items and modules (`__private`, the macros' support). The check fails when the list differs
//! from the snapshot, printing the lines added and removed; `--bless` writes the new list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use quote::ToTokens;

/// Options of `cargo xtask public-api`.
#[derive(clap::Args)]
pub struct PublicApiArgs {
    /// Write the current API to the snapshot instead of comparing.
    #[arg(long)]
    pub bless: bool,
}

const CRATE_DIR: &str = "crates/livekit-agents";
const SNAPSHOT: &str = "crates/livekit-agents/public-api.txt";

/// Runs the check (or writes the snapshot with `--bless`).
pub fn run(args: PublicApiArgs) -> anyhow::Result<()> {
    let root = workspace_root()?;
    let lines = collect(&root.join(CRATE_DIR).join("src/lib.rs"), "livekit_agents")?;
    let mut text = String::from(
        "// The public API of livekit-agents (`cargo xtask public-api`; `--bless` rewrites this).\n",
    );
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    let snapshot = root.join(SNAPSHOT);
    if args.bless {
        std::fs::write(&snapshot, &text)
            .with_context(|| format!("cannot write {}", snapshot.display()))?;
        eprintln!("public API: {} items written to {SNAPSHOT}", lines.len());
        return Ok(());
    }
    let old = std::fs::read_to_string(&snapshot).unwrap_or_default();
    let old: BTreeSet<&str> = old.lines().filter(|l| !l.starts_with("// ")).collect();
    let new: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
    let removed: Vec<_> = old.difference(&new).collect();
    let added: Vec<_> = new.difference(&old).collect();
    if removed.is_empty() && added.is_empty() {
        eprintln!("public API unchanged ({} items)", lines.len());
        return Ok(());
    }
    for line in &removed {
        eprintln!("- {line}");
    }
    for line in &added {
        eprintln!("+ {line}");
    }
    bail!(
        "the public API changed ({} items removed, {} added) without {SNAPSHOT} being updated: \
         review the lines above, then run `cargo xtask public-api --bless` and commit the file",
        removed.len(),
        added.len()
    )
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// The public API lines of the crate whose root module is `lib_rs`, named `krate`.
pub fn collect(lib_rs: &Path, krate: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let file = parse(lib_rs)?;
    let dir = lib_rs.parent().context("lib.rs has no directory")?;
    let module = Module {
        path: krate.to_owned(),
        dir: dir.to_path_buf(),
        visible: true,
        cfg: String::new(),
    };
    out.insert(format!("{VISIBLE}{krate}"));
    walk_items(&file.items, &module, &mut out)?;
    Ok(resolve_reexports(out))
}

/// Markers of the walk's internal lines (never in the output): an item line of a module users
/// cannot reach, a module users can reach, and a `pub use` name with its absolute target.
const HIDDEN: &str = "\u{0}H";
const VISIBLE: &str = "\u{0}V";
const ALIAS: &str = "\u{0}A";

/// Items declared in modules users cannot reach (`pub(crate) mod session;`) are part of the
/// API through the `pub use` that re-exports them (`voice::AgentSession`): their lines are
/// written under the path users name, following chains of re-exports.
fn resolve_reexports(lines: BTreeSet<String>) -> BTreeSet<String> {
    use std::collections::{HashMap, HashSet};
    let mut out = BTreeSet::new();
    let mut hidden: HashMap<String, Vec<String>> = HashMap::new();
    let mut visible: HashSet<String> = HashSet::new();
    let mut aliases: Vec<(String, String, String)> = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix(HIDDEN) {
            if let Some((module, text)) = rest.split_once('\u{0}') {
                hidden
                    .entry(module.to_owned())
                    .or_default()
                    .push(text.to_owned());
            }
        } else if let Some(module) = line.strip_prefix(VISIBLE) {
            visible.insert(module.to_owned());
        } else if let Some(rest) = line.strip_prefix(ALIAS) {
            let mut parts = rest.splitn(3, '\u{0}');
            if let (Some(m), Some(a), Some(t)) = (parts.next(), parts.next(), parts.next()) {
                aliases.push((m.to_owned(), a.to_owned(), t.to_owned()));
            }
        } else {
            out.insert(line);
        }
    }
    let by_name: HashMap<String, String> = aliases
        .iter()
        .filter(|(_, a, _)| a != "*")
        .map(|(m, a, t)| (format!("{m}::{a}"), t.clone()))
        .collect();
    // The hidden definition a path names (module, item), through re-export chains.
    let resolve = |mut path: String| -> Option<(String, String)> {
        for _ in 0..16 {
            if let Some((module, name)) = path.rsplit_once("::") {
                if hidden
                    .get(module)
                    .is_some_and(|ls| ls.iter().any(|l| mentions(l, &format!("{module}::{name}"))))
                {
                    return Some((module.to_owned(), name.to_owned()));
                }
            }
            path = by_name.get(&path)?.clone();
        }
        None
    };
    for (module, alias, target) in &aliases {
        if !visible.contains(module) {
            continue;
        }
        if alias == "*" {
            for line in hidden.get(target).into_iter().flatten() {
                out.insert(line.replace(&format!("{target}::"), &format!("{module}::")));
            }
            continue;
        }
        let Some((def_module, name)) = resolve(target.clone()) else {
            continue;
        };
        let from = format!("{def_module}::{name}");
        let to = format!("{module}::{alias}");
        for line in hidden.get(&def_module).into_iter().flatten() {
            if mentions(line, &from) {
                out.insert(replace_path(line, &from, &to));
            }
        }
    }
    out
}

/// Whether `line` names `path` (not a longer name that starts with it).
fn mentions(line: &str, path: &str) -> bool {
    line.match_indices(path).any(|(i, _)| {
        !line[i + path.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// `line` with each whole occurrence of `from` replaced by `to`.
fn replace_path(line: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(from) {
        let after = &rest[i + from.len()..];
        let whole = !after
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        out.push_str(if whole { to } else { from });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The names a `use` tree brings in, with their targets as path segments (relative to the
/// module, or starting with `crate`, `self` or `super`); a glob is named `*`.
fn expand_use(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            expand_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident == "self" => {
            if let Some(last) = prefix.last() {
                out.push((last.clone(), prefix.clone()));
            }
        }
        syn::UseTree::Name(n) => {
            let mut target = prefix.clone();
            target.push(n.ident.to_string());
            out.push((n.ident.to_string(), target));
        }
        syn::UseTree::Rename(r) => {
            let mut target = prefix.clone();
            target.push(r.ident.to_string());
            out.push((r.rename.to_string(), target));
        }
        syn::UseTree::Glob(_) => out.push(("*".to_owned(), prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                expand_use(t, prefix, out);
            }
        }
    }
}

/// `segments` (a `use` path written in `module`) as an absolute path.
fn absolute(module: &str, segments: &[String]) -> String {
    let krate = module.split("::").next().unwrap_or_default();
    let mut base: Vec<&str> = module.split("::").collect();
    let mut rest = segments;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base = vec![krate];
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut parts: Vec<String> = base.into_iter().map(str::to_owned).collect();
    parts.extend(rest.iter().cloned());
    parts.join("::")
}

fn parse(path: &Path) -> anyhow::Result<syn::File> {
    let src =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    syn::parse_file(&src).with_context(|| format!("cannot parse {}", path.display()))
}

/// Where a module is: its path, the directory its child module files are in, whether users can
/// reach it, and the cfg that applies to it.
struct Module {
    path: String,
    dir: PathBuf,
    visible: bool,
    cfg: String,
}

/// The tokens of `t` as text, without trailing commas (which rustfmt adds or removes as a
/// line's length changes, so they are not part of the API).
fn tokens(t: &impl ToTokens) -> String {
    let text = t.to_token_stream().to_string();
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ',' {
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if matches!(next, Some(')' | ']' | '}' | '>')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn is_pub(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Public(_))
}

fn has_path_attr(attrs: &[syn::Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.path().is_ident(name))
}

fn doc_hidden(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("doc") && tokens(&a.meta).contains("hidden"))
}

/// The attributes that are part of the API: cfg, derives, non_exhaustive.
fn api_attrs(attrs: &[syn::Attribute]) -> String {
    let mut out = String::new();
    for a in attrs {
        let p = a.path();
        if p.is_ident("cfg") || p.is_ident("derive") || p.is_ident("non_exhaustive") {
            out.push_str(&tokens(a));
            out.push(' ');
        }
    }
    out
}

fn cfg_attrs(attrs: &[syn::Attribute]) -> String {
    let mut out = String::new();
    for a in attrs.iter().filter(|a| a.path().is_ident("cfg")) {
        out.push_str(&tokens(a));
        out.push(' ');
    }
    out
}

fn child_file(dir: &Path, name: &str, attrs: &[syn::Attribute]) -> Option<PathBuf> {
    // `#[path = "..."]` on a module declaration.
    for a in attrs.iter().filter(|a| a.path().is_ident("path")) {
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                return Some(dir.join(s.value()));
            }
        }
    }
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        return Some(flat);
    }
    let nested = dir.join(name).join("mod.rs");
    nested.exists().then_some(nested)
}

fn walk_items(items: &[syn::Item], m: &Module, out: &mut BTreeSet<String>) -> anyhow::Result<()> {
    for item in items {
        walk_item(item, m, out)?;
    }
    Ok(())
}

fn walk_item(item: &syn::Item, m: &Module, out: &mut BTreeSet<String>) -> anyhow::Result<()> {
    use syn::Item;
    let path = &m.path;
    // Items of a module users cannot reach are kept aside, for the `pub use`s that re-export
    // them (`resolve_reexports`).
    let hidden = if m.visible {
        String::new()
    } else {
        format!("{HIDDEN}{path}\u{0}")
    };
    let emit = |out: &mut BTreeSet<String>, attrs: &[syn::Attribute], text: String| {
        if !doc_hidden(attrs) {
            out.insert(format!(
                "{hidden}{}{}{}",
                m.cfg,
                api_attrs(attrs),
                text.trim_end()
            ));
        }
    };
    if let Item::Use(u) = item {
        if is_pub(&u.vis) && !doc_hidden(&u.attrs) {
            let mut names = Vec::new();
            expand_use(&u.tree, &mut Vec::new(), &mut names);
            for (alias, target) in names {
                out.insert(format!(
                    "{ALIAS}{path}\u{0}{alias}\u{0}{}",
                    absolute(path, &target)
                ));
            }
        }
    }
    match item {
        Item::Mod(md) => {
            if doc_hidden(&md.attrs) || has_path_attr(&md.attrs, "test") || is_cfg_test(&md.attrs) {
                return Ok(());
            }
            let name = md.ident.to_string();
            let visible = m.visible && is_pub(&md.vis);
            let child = Module {
                path: format!("{path}::{name}"),
                dir: m.dir.join(&name),
                visible,
                cfg: format!("{}{}", m.cfg, cfg_attrs(&md.attrs)),
            };
            if visible {
                out.insert(format!("{}pub mod {}", child.cfg, child.path));
                out.insert(format!("{VISIBLE}{}", child.path));
            }
            match &md.content {
                Some((_, items)) => walk_items(items, &child, out)?,
                None => {
                    let Some(file) = child_file(&m.dir, &name, &md.attrs) else {
                        bail!("module file of {}::{name} not found", m.path);
                    };
                    // A `foo.rs` module keeps its children in `foo/`; `foo/mod.rs` in `foo/`.
                    let child = Module {
                        dir: file
                            .parent()
                            .map(|p| {
                                if file.file_name().is_some_and(|f| f == "mod.rs") {
                                    p.to_path_buf()
                                } else {
                                    p.join(&name)
                                }
                            })
                            .unwrap_or_default(),
                        ..child
                    };
                    walk_items(&parse(&file)?.items, &child, out)?;
                }
            }
        }
        Item::Impl(imp) => walk_impl(imp, m, out),
        Item::Macro(mac) if has_path_attr(&mac.attrs, "macro_export") => {
            if let Some(ident) = &mac.ident {
                let krate = m.path.split("::").next().unwrap_or_default();
                emit(out, &mac.attrs, format!("macro {krate}::{ident}!"));
            }
        }
        Item::Struct(s) if is_pub(&s.vis) => {
            let name = format!("{path}::{}", s.ident);
            emit(
                out,
                &s.attrs,
                format!(
                    "pub struct {name}{} {}",
                    tokens(&s.generics),
                    where_clause(&s.generics)
                ),
            );
            let tuple = matches!(s.fields, syn::Fields::Unnamed(_));
            for (i, f) in s.fields.iter().enumerate() {
                if is_pub(&f.vis) {
                    let field = f
                        .ident
                        .as_ref()
                        .map_or_else(|| i.to_string(), ToString::to_string);
                    emit(
                        out,
                        &f.attrs,
                        format!("pub field {name}.{field}: {}", tokens(&f.ty)),
                    );
                } else if tuple || f.ident.is_some() {
                    // Private fields make the struct unconstructible with a literal, which is
                    // part of its API.
                    out.insert(format!("{hidden}{}struct {name} has private fields", m.cfg));
                }
            }
        }
        Item::Enum(e) if is_pub(&e.vis) => {
            let name = format!("{path}::{}", e.ident);
            emit(
                out,
                &e.attrs,
                format!(
                    "pub enum {name}{} {}",
                    tokens(&e.generics),
                    where_clause(&e.generics)
                ),
            );
            for v in &e.variants {
                emit(
                    out,
                    &v.attrs,
                    format!("variant {name}::{} {}", v.ident, tokens(&v.fields)),
                );
            }
        }
        Item::Fn(f) if is_pub(&f.vis) => {
            emit(
                out,
                &f.attrs,
                format!("pub {}", signature(&f.sig, Some(path))),
            );
        }
        Item::Trait(t) if is_pub(&t.vis) => {
            let name = format!("{path}::{}", t.ident);
            let supertraits = if t.supertraits.is_empty() {
                String::new()
            } else {
                format!(": {}", tokens(&t.supertraits))
            };
            emit(
                out,
                &t.attrs,
                format!(
                    "pub trait {name}{}{supertraits} {}",
                    tokens(&t.generics),
                    where_clause(&t.generics)
                ),
            );
            for ti in &t.items {
                let (attrs, text) = match ti {
                    syn::TraitItem::Fn(f) => (
                        &f.attrs,
                        format!(
                            "trait {}{}",
                            signature(&f.sig, Some(&name)),
                            if f.default.is_some() {
                                " (provided)"
                            } else {
                                ""
                            }
                        ),
                    ),
                    syn::TraitItem::Type(ty) => (
                        &ty.attrs,
                        format!("trait type {name}::{}", tokens(ty).replace(" ;", "")),
                    ),
                    syn::TraitItem::Const(c) => (
                        &c.attrs,
                        format!("trait const {name}::{}: {}", c.ident, tokens(&c.ty)),
                    ),
                    _ => continue,
                };
                emit(out, attrs, text);
            }
        }
        Item::Type(t) if is_pub(&t.vis) => emit(
            out,
            &t.attrs,
            format!(
                "pub type {path}::{}{} = {}",
                t.ident,
                tokens(&t.generics),
                tokens(&t.ty)
            ),
        ),
        Item::Const(c) if is_pub(&c.vis) => emit(
            out,
            &c.attrs,
            format!("pub const {path}::{}: {}", c.ident, tokens(&c.ty)),
        ),
        Item::Static(s) if is_pub(&s.vis) => emit(
            out,
            &s.attrs,
            format!("pub static {path}::{}: {}", s.ident, tokens(&s.ty)),
        ),
        Item::Use(u) if is_pub(&u.vis) && m.visible => {
            emit(
                out,
                &u.attrs,
                format!("pub use {path}: {}", tokens(&u.tree)),
            );
        }
        _ => {}
    }
    Ok(())
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && tokens(&a.meta) == "cfg (test)")
}

fn where_clause(g: &syn::Generics) -> String {
    g.where_clause.as_ref().map(tokens).unwrap_or_default()
}

/// A function signature without its parameters' attributes (`const`, `async`, `unsafe`,
/// `fn`, the name — prefixed with `prefix` when given —, generics, inputs, output, bounds).
fn signature(sig: &syn::Signature, prefix: Option<&str>) -> String {
    let mut sig = sig.clone();
    for input in &mut sig.inputs {
        if let syn::FnArg::Typed(pt) = input {
            pt.attrs.clear();
        }
    }
    let text = tokens(&sig);
    match prefix {
        Some(prefix) => {
            let name = format!("fn {}", sig.ident);
            text.replacen(&name, &format!("fn {prefix}::{}", sig.ident), 1)
        }
        None => text,
    }
}

fn walk_impl(imp: &syn::ItemImpl, m: &Module, out: &mut BTreeSet<String>) {
    if doc_hidden(&imp.attrs) {
        return;
    }
    let self_ty = tokens(&imp.self_ty);
    let generics = tokens(&imp.generics);
    let cfg = format!("{}{}", m.cfg, cfg_attrs(&imp.attrs));
    if let Some((negative, trait_path, _)) = &imp.trait_ {
        let bang = if negative.is_some() { "!" } else { "" };
        let line = format!(
            "{cfg}impl{generics} {bang}{} for {self_ty} {}",
            tokens(trait_path),
            where_clause(&imp.generics)
        );
        out.insert(line.trim_end().to_owned());
        return;
    }
    for item in &imp.items {
        let text = match item {
            syn::ImplItem::Fn(f) if is_pub(&f.vis) && !doc_hidden(&f.attrs) => {
                format!("impl{generics} {self_ty}: pub {}", signature(&f.sig, None))
            }
            syn::ImplItem::Const(c) if is_pub(&c.vis) && !doc_hidden(&c.attrs) => {
                format!(
                    "impl{generics} {self_ty}: pub const {}: {}",
                    c.ident,
                    tokens(&c.ty)
                )
            }
            _ => continue,
        };
        let attrs = match item {
            syn::ImplItem::Fn(f) => cfg_attrs(&f.attrs),
            syn::ImplItem::Const(c) => cfg_attrs(&c.attrs),
            _ => String::new(),
        };
        out.insert(format!("{cfg}{attrs}{text}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_public_items_and_leaves_private_ones_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(
            dir.join("lib.rs"),
            r#"
            pub mod a;
            mod hidden;
            #[cfg(feature = "x")]
            pub mod gated { pub fn g() {} }
            #[doc(hidden)]
            pub mod __private { pub fn secret() {} }
            pub use a::Thing;
            pub(crate) mod inner;
            pub use inner::{Deep, Inner as Renamed};
            "#,
        )
        .unwrap();
        std::fs::create_dir(dir.join("inner")).unwrap();
        std::fs::write(
            dir.join("inner.rs"),
            "pub struct Inner { pub f: u8 } pub struct Unexported; mod deep; pub use deep::Deep;",
        )
        .unwrap();
        std::fs::write(dir.join("inner/deep.rs"), "pub enum Deep { V }").unwrap();
        std::fs::write(
            dir.join("a.rs"),
            r#"
            #[derive(Debug, Clone)]
            #[non_exhaustive]
            pub struct Thing { pub x: u32, y: u8 }
            pub enum E { A, B(String) }
            pub(crate) fn internal() {}
            pub trait T: Send { fn f(&self) -> u8; fn g(&self) {} }
            impl Thing { pub fn new(x: u32) -> Self { Self { x, y: 0 } } fn private(&self) {} }
            impl Default for Thing { fn default() -> Self { Self::new(0) } }
            "#,
        )
        .unwrap();
        std::fs::write(
            dir.join("hidden.rs"),
            "pub struct NotReachable; impl crate::a::Thing { pub fn extra(&self) {} }",
        )
        .unwrap();
        let lines = collect(&dir.join("lib.rs"), "k").unwrap();
        let text: Vec<&str> = lines.iter().map(String::as_str).collect();
        let has = |s: &str| text.iter().any(|l| l.contains(s));
        assert!(
            has("# [non_exhaustive] pub struct k::a::Thing"),
            "{text:#?}"
        );
        assert!(has("pub field k::a::Thing.x: u32"));
        assert!(has("struct k::a::Thing has private fields"));
        assert!(has("variant k::a::E::B (String)"));
        assert!(has("trait fn k::a::T::f (& self) -> u8"), "{text:#?}");
        assert!(has("trait fn k::a::T::g (& self) (provided)"));
        assert!(has("impl Thing: pub fn new (x : u32) -> Self"));
        assert!(has("impl crate :: a :: Thing: pub fn extra (& self)"));
        assert!(has("impl Default for Thing"));
        assert!(has("# [cfg (feature = \"x\")] pub fn k::gated::g ()"));
        assert!(has("pub use k: a :: Thing"));
        assert_eq!(
            tokens(&syn::parse_str::<syn::Type>("(u8, u16,)").unwrap()),
            "(u8 , u16 )"
        );
        assert!(!has("internal"));
        assert!(!has("fn private"));
        assert!(!has("NotReachable"));
        assert!(!has("secret"));
        // Items of unreachable modules are listed under the path of their re-export.
        assert!(has("pub struct k::Renamed"), "{text:#?}");
        assert!(has("pub field k::Renamed.f: u8"));
        assert!(has("variant k::Deep::V"));
        assert!(!has("k::inner::"), "{text:#?}");
        assert!(!has("Unexported"));
    }
}
