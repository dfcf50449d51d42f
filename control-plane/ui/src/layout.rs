//! The page shell: a tiny template with three placeholders (`{{title}}`, `{{content}}`,
//! `{{css_href}}`), built in with `include_str!` or replaced by the operator's
//! `ui.templates_dir/layout.html`, which is read once at start. Placeholders are found once,
//! when the template is parsed, so text that merely looks like a placeholder inside a value
//! (a user's name, say) is never substituted.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use portcullis_model::StartupError;

use crate::html::escape;

const BUILTIN_LAYOUT: &str = include_str!("templates/layout.html");
const PLACEHOLDERS: [&str; 3] = ["title", "content", "css_href"];

static BUILTIN: LazyLock<Layout> = LazyLock::new(|| Layout::parse(BUILTIN_LAYOUT).0);

/// The built-in UI's settings (`ui` in the config file).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A directory of operator templates; its `layout.html`, if any, replaces the built-in page
    /// shell. Relative paths are read from the config file's directory.
    pub templates_dir: Option<String>,
    /// The site name, in every page's `<title>` and header.
    pub title: String,
    /// The operator's layout, once [`UiConfig::load_templates`] has read it.
    #[serde(skip)]
    layout: Option<Arc<Layout>>,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self { templates_dir: None, title: "Portcullis".into(), layout: None }
    }
}

// A whole HTML file is noise in a log line.
impl std::fmt::Debug for UiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiConfig")
            .field("templates_dir", &self.templates_dir)
            .field("title", &self.title)
            .field("custom_layout", &self.layout.is_some())
            .finish()
    }
}

impl UiConfig {
    /// Reads `templates_dir/layout.html` if there is one; `base` is the config file's
    /// directory. A template without all three placeholders is refused, naming the file.
    pub fn load_templates(&mut self, base: &Path) -> Result<(), StartupError> {
        let Some(dir) = self.templates_dir.as_deref().filter(|d| !d.trim().is_empty()) else {
            return Ok(());
        };
        let dir = if Path::new(dir).is_absolute() { Path::new(dir).to_path_buf() } else { base.join(dir) };
        if !dir.is_dir() {
            return Err(StartupError(format!("config key ui.templates_dir: {} is not a directory", dir.display())));
        }
        let path = dir.join("layout.html");
        if !path.exists() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StartupError(format!("ui template {}: cannot read it: {e}", path.display())))?;
        let (layout, missing) = Layout::parse(&text);
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|m| format!("{{{{{m}}}}}")).collect();
            return Err(StartupError(format!(
                "ui template {}: missing placeholder {} (a layout needs {{{{title}}}}, {{{{content}}}} and {{{{css_href}}}})",
                path.display(),
                names.join(", ")
            )));
        }
        self.layout = Some(Arc::new(layout));
        Ok(())
    }

    /// The operator's layout or the built-in one.
    pub fn layout(&self) -> &Layout {
        self.layout.as_deref().unwrap_or(&BUILTIN)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Title,
    Content,
    CssHref,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    parts: Vec<Part>,
}

impl Layout {
    /// The template and the placeholders it lacks. `{{…}}` with any other name stays as text.
    fn parse(text: &str) -> (Self, Vec<&'static str>) {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let part = match after[..end].trim() {
                "title" => Some(Part::Title),
                "content" => Some(Part::Content),
                "css_href" => Some(Part::CssHref),
                _ => None,
            };
            match part {
                Some(p) => {
                    literal.push_str(&rest[..start]);
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                    parts.push(p);
                }
                None => literal.push_str(&rest[..start + 2 + end + 2]),
            }
            rest = &after[end + 2..];
        }
        literal.push_str(rest);
        parts.push(Part::Text(literal));
        let has = |p: &Part| parts.contains(p);
        let missing = PLACEHOLDERS
            .into_iter()
            .zip([Part::Title, Part::Content, Part::CssHref])
            .filter(|(_, p)| !has(p))
            .map(|(name, _)| name)
            .collect();
        (Self { parts }, missing)
    }

    /// The page: `title` and `css_href` are escaped here; `content` is HTML built by this
    /// module, every value in it already escaped.
    pub fn render(&self, title: &str, content: &str, css_href: &str) -> String {
        let mut out = String::with_capacity(content.len() + 1024);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Title => out.push_str(&escape(title)),
                Part::Content => out.push_str(content),
                Part::CssHref => out.push_str(&escape(css_href)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_layout_has_every_placeholder() {
        let (layout, missing) = Layout::parse(BUILTIN_LAYOUT);
        assert!(missing.is_empty(), "{missing:?}");
        let page = layout.render("A & B", "<p>hi</p>", "/ui/style.css?a=1&b=2");
        assert!(page.contains("<title>A &amp; B</title>"), "{page}");
        assert!(page.contains("<p>hi</p>"));
        assert!(page.contains("href=\"/ui/style.css?a=1&amp;b=2\""));
        assert!(page.contains("lang=\"en\""));
    }

    #[test]
    fn placeholders_inside_values_are_not_substituted() {
        let (layout, _) = Layout::parse("<t>{{ title }}</t>{{content}}{{other}}<l>{{css_href}}</l>");
        let page = layout.render("{{content}}", "{{css_href}}", "x");
        assert_eq!(page, "<t>{{content}}</t>{{css_href}}{{other}}<l>x</l>");
    }

    #[test]
    fn an_operator_layout_replaces_the_built_in_one_and_must_have_every_placeholder() {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-ui-{}",
            portcullis_model::crypto::hex(&portcullis_model::crypto::random_bytes::<6>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ui = UiConfig { templates_dir: Some(dir.display().to_string()), ..UiConfig::default() };
        // A directory without layout.html keeps the built-in shell.
        ui.load_templates(Path::new("")).unwrap();
        assert_eq!(ui.layout(), &*BUILTIN);

        std::fs::write(dir.join("layout.html"), "<html><title>{{title}}</title><main>{{content}}</main></html>")
            .unwrap();
        let err = ui.load_templates(Path::new("")).unwrap_err().to_string();
        assert!(err.contains("layout.html") && err.contains("{{css_href}}"), "{err}");
        assert!(!err.contains("{{content}},"), "only what is missing is named: {err}");

        std::fs::write(dir.join("layout.html"), "<html>{{title}}|{{content}}|{{css_href}}</html>").unwrap();
        ui.load_templates(Path::new("")).unwrap();
        assert_eq!(ui.layout().render("T", "<b>c</b>", "s.css"), "<html>T|<b>c</b>|s.css</html>");
        assert!(format!("{ui:?}").contains("custom_layout: true"));

        let mut relative = UiConfig { templates_dir: Some("nope".into()), ..UiConfig::default() };
        let err = relative.load_templates(&dir).unwrap_err().to_string();
        assert!(err.contains("ui.templates_dir") && err.contains("nope"), "{err}");
    }
}
