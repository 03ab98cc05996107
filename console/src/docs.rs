//! The console's documentation pages: the README's sections an operator
//! needs, embedded in the binary (so the docs match the running version),
//! one page per `## ` section.

use serde::Serialize;
use utoipa::ToSchema;

const README: &str = include_str!("../../README.md");

/// The README's sections shown, by title.
const OPERATOR_SECTIONS: [&str; 9] = [
    "Quick start",
    "`weir run`",
    "The flow record",
    "The store",
    "Enrichment: exporter and interface metadata",
    "The console API",
    "Operating Weir",
    "HAProxy access logs",
    "Decoder state and its bounds",
];

/// A page: its name in the URL, its title and its Markdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Page {
    pub name: String,
    pub title: String,
    pub markdown: String,
}

/// `The console API` → `the-console-api`.
fn slug(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    s.trim_end_matches('-').to_string()
}

/// Every page, in the README's order.
pub fn pages() -> Vec<Page> {
    let mut pages = Vec::new();
    let mut rest = README;
    while let Some(at) = rest.find("\n## ") {
        rest = &rest[at + 4..];
        let (title, body) = rest.split_once('\n').unwrap_or((rest, ""));
        let end = body.find("\n## ").unwrap_or(body.len());
        if OPERATOR_SECTIONS.contains(&title.trim()) {
            let title = title.trim().to_string();
            pages.push(Page { name: slug(&title), markdown: body[..end].trim().to_string(), title });
        }
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_section_is_a_page() {
        let pages = pages();
        assert_eq!(
            pages.len(),
            OPERATOR_SECTIONS.len(),
            "a section was renamed: {:?}",
            pages.iter().map(|p| &p.title).collect::<Vec<_>>()
        );
        let enrichment = pages.iter().find(|p| p.name == "enrichment-exporter-and-interface-metadata").unwrap();
        assert!(enrichment.markdown.contains("### Classifiers"));
        let console = pages.iter().find(|p| p.name == "the-console-api").unwrap();
        assert!(console.markdown.contains("### The filter language"));
        assert!(!console.markdown.contains("\n## "));
        assert_eq!(slug("`weir run`"), "weir-run");
    }
}
