//! Procedural macros for `livekit-agents`. Use them through the main crate
//! (`livekit_agents::llm::function_tool`), which re-exports them together with the paths the
//! generated code needs.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, FnArg, ItemFn, Lit, LitStr, Meta, Pat, Token, Type};

/// Turns a documented `async fn` into a function that returns a `FunctionTool`.
///
/// - The tool's name is the function's name (`#[function_tool(name = "…")]` overrides it).
/// - Its description is the doc comment, without the arguments section
///   (`#[function_tool(description = "…")]` overrides it).
/// - Each parameter becomes a property of the JSON schema; its description comes from the doc
///   comment's `# Arguments` section (lines such as ``* `city` - The city to look up.``).
/// - `#[function_tool(flags = ToolFlags::IGNORE_ON_ENTER)]` sets the tool's flags (any
///   expression of type `ToolFlags`).
/// - A first parameter of type `RunContext` receives the call's context and is not part of the
///   schema.
/// - The return type is anything `IntoToolResult`: `Result<T, E>` with any error type `E`
///   (`?` works; errors other than `ToolError::new` reach the model as a generic message and are
///   logged), or a plain value for tools that cannot fail.
///
/// See the `livekit_agents::llm::function_tool` re-export for an example.
#[proc_macro_attribute]
pub fn function_tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = match syn::parse::<ToolOptions>(attr) {
        Ok(options) => options,
        Err(e) => return e.to_compile_error().into(),
    };
    let item = match syn::parse::<ItemFn>(item) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error().into(),
    };
    match expand(options, item) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// `name = "…"`, `description = "…"`, `flags = <expression of type ToolFlags>`.
#[derive(Default)]
struct ToolOptions {
    name: Option<LitStr>,
    description: Option<LitStr>,
    flags: Option<Expr>,
}

impl Parse for ToolOptions {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut options = ToolOptions::default();
        let pairs = Punctuated::<Meta, Token![,]>::parse_terminated(input)?;
        for meta in pairs {
            let Meta::NameValue(nv) = &meta else {
                return Err(syn::Error::new(
                    meta.span(),
                    "expected `name = \"…\"`, `description = \"…\"` or `flags = …`",
                ));
            };
            if nv.path.is_ident("flags") {
                options.flags = Some(nv.value.clone());
                continue;
            }
            let Expr::Lit(ExprLit {
                lit: Lit::Str(value),
                ..
            }) = &nv.value
            else {
                return Err(syn::Error::new(
                    nv.value.span(),
                    "expected a string literal",
                ));
            };
            if nv.path.is_ident("name") {
                options.name = Some(value.clone());
            } else if nv.path.is_ident("description") {
                options.description = Some(value.clone());
            } else {
                return Err(syn::Error::new(
                    nv.path.span(),
                    "unknown option: expected `name`, `description` or `flags`",
                ));
            }
        }
        Ok(options)
    }
}

/// One schema property: a parameter of the function.
struct Param {
    ident: syn::Ident,
    ty: Type,
    description: Option<String>,
}

fn expand(options: ToolOptions, item: ItemFn) -> syn::Result<TokenStream2> {
    let sig = &item.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            "#[function_tool] needs an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a function tool cannot be generic: the model calls it with concrete JSON arguments",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            "#[function_tool] works on free functions; for state, use the session's userdata \
             (RunContext::userdata) or build the tool with FunctionTool::new and a closure",
        ));
    }

    let docs = doc_lines(&item.attrs);
    let parsed = parse_docs(&docs);

    let mut takes_context = false;
    let mut params = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(pat_type) = input else {
            continue;
        };
        if i == 0 && is_run_context(&pat_type.ty) {
            takes_context = true;
            continue;
        }
        let Pat::Ident(pat_ident) = &*pat_type.pat else {
            return Err(syn::Error::new(
                pat_type.pat.span(),
                "a tool parameter must be a plain name: it becomes the JSON property's name",
            ));
        };
        if let Type::Reference(r) = &*pat_type.ty {
            return Err(syn::Error::new(
                r.span(),
                "a tool parameter must be an owned type (e.g. `String`, not `&str`): it is \
                 deserialized from the model's JSON arguments",
            ));
        }
        let ident = pat_ident.ident.clone();
        let name = ident.to_string();
        let description = parsed
            .arguments
            .iter()
            .find(|(n, _)| *n == name || n.trim_start_matches('_') == name)
            .map(|(_, d)| d.clone());
        params.push(Param {
            ident,
            ty: (*pat_type.ty).clone(),
            description,
        });
    }
    for (documented, _) in &parsed.arguments {
        if !params.iter().any(|p| p.ident == documented.as_str()) {
            return Err(syn::Error::new(
                sig.ident.span(),
                format!("the doc comment describes `{documented}`, which is not a parameter"),
            ));
        }
    }

    let vis = &item.vis;
    let fn_name = &sig.ident;
    let tool_name = options
        .name
        .map(|n| n.value())
        .unwrap_or_else(|| fn_name.to_string());
    let description = options
        .description
        .map(|d| d.value())
        .unwrap_or(parsed.description);
    if description.trim().is_empty() {
        return Err(syn::Error::new(
            sig.ident.span(),
            "a function tool needs a description: write a doc comment (the model reads it to \
             decide when to call the tool) or pass `description = \"…\"`",
        ));
    }

    let krate = quote!(::livekit_agents);
    let field_defs = params.iter().map(|p| {
        let ident = &p.ident;
        let ty = &p.ty;
        let doc = p.description.as_deref().map(|d| quote!(#[doc = #d]));
        quote! { #doc #ident: #ty, }
    });
    let field_names: Vec<_> = params.iter().map(|p| &p.ident).collect();
    let args_struct = format_ident!("__{}Arguments", to_camel(&fn_name.to_string()));

    // The original function, renamed and kept private to the generated one.
    let mut body_fn = item.clone();
    body_fn.sig.ident = Ident2::new("__tool_body", Span::call_site());
    body_fn.vis = syn::Visibility::Inherited;
    body_fn.attrs.retain(|a| !a.path().is_ident("doc"));

    let call_args = if takes_context {
        quote!(ctx, #(args.#field_names),*)
    } else {
        quote!(#(args.#field_names),*)
    };
    let ctx_binding = if takes_context {
        quote!(ctx)
    } else {
        quote!(_ctx)
    };
    let doc_attrs = item.attrs.iter().filter(|a| a.path().is_ident("doc"));
    let serde_path = quote!(#krate::__private::serde)
        .to_string()
        .replace(' ', "");
    let schemars_path = quote!(#krate::__private::schemars)
        .to_string()
        .replace(' ', "");

    let with_flags = options.flags.as_ref().map(|f| quote!(.with_flags(#f)));

    Ok(quote! {
        #(#doc_attrs)*
        ///
        /// (A function tool: this returns its `FunctionTool`.)
        #vis fn #fn_name() -> #krate::llm::FunctionTool {
            #[derive(#krate::__private::serde::Deserialize, #krate::__private::schemars::JsonSchema)]
            #[serde(crate = #serde_path)]
            #[schemars(crate = #schemars_path)]
            #[allow(non_camel_case_types)]
            struct #args_struct {
                #(#field_defs)*
            }

            #body_fn

            #krate::llm::FunctionTool::new(
                #tool_name,
                #description,
                |#ctx_binding: #krate::llm::RunContext, args: #args_struct| async move {
                    #krate::llm::IntoToolResult::into_tool_result(__tool_body(#call_args).await)
                },
            )
            #with_flags
        }
    })
}

type Ident2 = syn::Ident;

/// Whether a parameter's type is `RunContext` (any path ending in it).
fn is_run_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "RunContext"),
        _ => false,
    }
}

/// `lookup_weather` -> `LookupWeather`.
fn to_camel(name: &str) -> String {
    name.split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// The doc comment's lines, with the one space rustdoc puts after `///` removed.
fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
            {
                for line in s.value().split('\n') {
                    lines.push(line.strip_prefix(' ').unwrap_or(line).to_owned());
                }
            }
        }
    }
    lines
}

/// A doc comment split into the tool's description and its arguments' descriptions.
struct ParsedDocs {
    description: String,
    arguments: Vec<(String, String)>,
}

/// Reads the rustdoc convention (`# Arguments` then a list of ``* `name` - text``), and the
/// Python-docstring habit the reference parses (`Args:` then `name: text`). The description is
/// the text before the first section heading: other sections (`# Errors`, `# Examples`) are
/// for Rust readers, not for the model.
fn parse_docs(lines: &[String]) -> ParsedDocs {
    enum State {
        Description,
        Arguments,
        OtherSection,
    }
    let mut state = State::Description;
    let mut description = Vec::new();
    let mut arguments: Vec<(String, String)> = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        let lower = trimmed.to_ascii_lowercase();
        let heading = lower.trim_start_matches('#').trim().trim_end_matches(':');
        let arguments_heading = (lower.starts_with('#') || lower.ends_with(':'))
            && matches!(heading, "arguments" | "args" | "parameters" | "params");
        if arguments_heading {
            state = State::Arguments;
            continue;
        }
        if lower.starts_with('#') {
            state = State::OtherSection;
            continue;
        }
        match state {
            State::Description => description.push(line.trim_end().to_owned()),
            State::Arguments if !trimmed.is_empty() => {
                if let Some((name, text)) = argument_item(trimmed) {
                    arguments.push((name, text));
                } else if let Some((_, text)) = arguments.last_mut() {
                    // A continuation line of the previous argument.
                    text.push(' ');
                    text.push_str(trimmed);
                }
            }
            State::Arguments | State::OtherSection => {}
        }
    }
    while description.last().is_some_and(|l| l.is_empty()) {
        description.pop();
    }
    while description.first().is_some_and(|l| l.is_empty()) {
        description.remove(0);
    }
    ParsedDocs {
        description: description.join("\n"),
        arguments,
    }
}

/// ``* `city` - The city.``, ``- `city`: The city.``, `city: The city.`,
/// `city (str): The city.` -> (`city`, `The city.`).
fn argument_item(line: &str) -> Option<(String, String)> {
    let line = line
        .strip_prefix("* ")
        .or_else(|| line.strip_prefix("- "))
        .unwrap_or(line)
        .trim_start();
    let (name, rest) = if let Some(after) = line.strip_prefix('`') {
        let end = after.find('`')?;
        (&after[..end], &after[end + 1..])
    } else {
        let end = line.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
        (&line[..end], &line[end..])
    };
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let mut rest = rest.trim_start();
    // An optional type in parentheses, as in docstrings: `city (str): …`.
    if let Some(after) = rest.strip_prefix('(') {
        rest = after.split_once(')').map(|(_, r)| r)?.trim_start();
    }
    let text = rest
        .strip_prefix(':')
        .or_else(|| rest.strip_prefix("--"))
        .or_else(|| rest.strip_prefix('-'))
        .or_else(|| rest.strip_prefix('—'))?
        .trim();
    Some((name.to_owned(), text.to_owned()))
}

/// Derives a `with_<field>(self, value) -> Self` setter for every `pub` field of a struct with
/// named fields: the one builder style of the crate's option structs, which are
/// `#[non_exhaustive]` (so a new field is not a breaking change) and built as
/// `Options::default().with_x(..).with_y(..)`.
///
/// A setter takes the field's type (`impl Into<String>` / `impl Into<PathBuf>` for text and
/// paths); for an `Option<T>` field it takes the `T` and sets `Some`, and a
/// `without_<field>(self)` sets `None`.
///
/// Each setter's doc is the field's first doc line; `#[cfg]` attributes of a field are carried
/// over to its setter, `#[setters(skip)]` on a field leaves it out, and `#[setters(as_is)]`
/// takes a `String` or `PathBuf` field's type without `Into`.
#[proc_macro_derive(Setters, attributes(setters))]
pub fn derive_setters(item: TokenStream) -> TokenStream {
    let input = match syn::parse::<syn::DeriveInput>(item) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error().into(),
    };
    match expand_setters(input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_setters(input: syn::DeriveInput) -> syn::Result<TokenStream2> {
    let syn::Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "Setters: only structs with named fields",
        ));
    };
    let syn::Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            input.ident.span(),
            "Setters: only structs with named fields",
        ));
    };
    let mut setters = Vec::new();
    for field in &fields.named {
        let (skip, as_is) = setter_flags(&field.attrs)?;
        if !matches!(field.vis, syn::Visibility::Public(_)) || skip {
            continue;
        }
        let Some(ident) = &field.ident else { continue };
        let name = ident.to_string();
        let name = name.trim_start_matches("r#");
        let setter = format_ident!("with_{}", name);
        let ty = &field.ty;
        let summary = first_doc_line(&field.attrs);
        let doc = if summary.is_empty() {
            format!("Sets `{name}`.")
        } else {
            format!("Sets `{name}`: {summary}")
        };
        let cfgs = field.attrs.iter().filter(|a| a.path().is_ident("cfg"));
        // Text and paths through `Into` (`&str` for a `String`); anything else as it is, so
        // integer literals and `Arc::new(x)` for an `Arc<dyn ..>` need no annotation.
        let body = match option_inner(ty) {
            Some(inner) if !as_is && wants_into(inner) => quote! {
                pub fn #setter(mut self, #ident: impl Into<#inner>) -> Self {
                    self.#ident = Some(#ident.into());
                    self
                }
            },
            Some(inner) => quote! {
                pub fn #setter(mut self, #ident: #inner) -> Self {
                    self.#ident = Some(#ident);
                    self
                }
            },
            None if !as_is && wants_into(ty) => quote! {
                pub fn #setter(mut self, #ident: impl Into<#ty>) -> Self {
                    self.#ident = #ident.into();
                    self
                }
            },
            None => quote! {
                pub fn #setter(mut self, #ident: #ty) -> Self {
                    self.#ident = #ident;
                    self
                }
            },
        };
        let cfgs: Vec<_> = cfgs.collect();
        setters.push(quote! {
            #(#cfgs)*
            #[doc = #doc]
            #[must_use]
            #body
        });
        if option_inner(ty).is_some() {
            let clear = format_ident!("without_{}", name);
            let doc = format!("Sets `{name}` to `None`.");
            setters.push(quote! {
                #(#cfgs)*
                #[doc = #doc]
                #[must_use]
                pub fn #clear(mut self) -> Self {
                    self.#ident = None;
                    self
                }
            });
        }
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics #name #ty_generics #where_clause {
            #(#setters)*
        }
    })
}

/// Whether a setter of `ty` takes `impl Into<ty>`: `String` and `PathBuf`.
fn wants_into(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    path.path
        .segments
        .last()
        .is_some_and(|s| s.arguments.is_empty() && (s.ident == "String" || s.ident == "PathBuf"))
}

/// `T` of an `Option<T>` field (its setter takes the value and sets `Some`).
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(inner) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// `#[setters(skip)]` and `#[setters(as_is)]` (a `String` or `PathBuf` taken without `Into`).
fn setter_flags(attrs: &[Attribute]) -> syn::Result<(bool, bool)> {
    let (mut skip, mut as_is) = (false, false);
    for attr in attrs.iter().filter(|a| a.path().is_ident("setters")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else if meta.path.is_ident("as_is") {
                as_is = true;
                Ok(())
            } else {
                Err(meta.error("expected `skip` or `as_is`"))
            }
        })?;
    }
    Ok((skip, as_is))
}

fn first_doc_line(attrs: &[Attribute]) -> String {
    for attr in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        if let Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
            {
                let line = s.value();
                let line = line.trim();
                if !line.is_empty() {
                    return line.to_string();
                }
            }
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn rustdoc_arguments_section() {
        let docs = parse_docs(&lines(
            "Look up the weather.\n\nUse it for current conditions.\n\n# Arguments\n\n\
             * `city` - The city to look up.\n* `days` - How many days\n  of forecast.\n\n\
             # Errors\n\nWhen the service is down.",
        ));
        assert_eq!(
            docs.description,
            "Look up the weather.\n\nUse it for current conditions."
        );
        assert_eq!(
            docs.arguments,
            vec![
                ("city".to_owned(), "The city to look up.".to_owned()),
                ("days".to_owned(), "How many days of forecast.".to_owned()),
            ]
        );
    }

    #[test]
    fn docstring_style_arguments() {
        let docs = parse_docs(&lines(
            "Book a table.\nArgs:\n    guests (int): Number of guests.\n    time: When, e.g. 19:00.",
        ));
        assert_eq!(docs.description, "Book a table.");
        assert_eq!(
            docs.arguments,
            vec![
                ("guests".to_owned(), "Number of guests.".to_owned()),
                ("time".to_owned(), "When, e.g. 19:00.".to_owned()),
            ]
        );
    }

    #[test]
    fn no_arguments_section() {
        let docs = parse_docs(&lines("Hang up.\n"));
        assert_eq!(docs.description, "Hang up.");
        assert!(docs.arguments.is_empty());
    }

    #[test]
    fn camel_case_struct_names() {
        assert_eq!(to_camel("lookup_weather"), "LookupWeather");
        assert_eq!(to_camel("_x__y"), "XY");
    }
}
