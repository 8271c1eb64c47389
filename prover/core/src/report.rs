//! One line for an error chain, each cause said once: the binaries' last word on a failure.
//!
//! Errors here wrap their source and often repeat its text (`"reading x: {source}"`), so a plain
//! `{e:#}` says the same cause several times. Each cause whose text is already in the line is
//! skipped.

use std::error::Error;

/// `causes` (outermost first, as `anyhow::Error::chain` yields them) joined by `": "`, each text
/// once.
pub fn causes_once<'a>(causes: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut out = String::new();
    for cause in causes {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// [`causes_once`] of `e` and its sources.
pub fn error_line(e: &(dyn Error + 'static)) -> String {
    fn source<'a>(e: &&'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
        (**e).source()
    }
    causes_once(std::iter::successors(Some(e), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: String,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(text: &str, source: Option<E>) -> E {
        E {
            text: text.into(),
            source: source.map(Box::new),
        }
    }

    #[test]
    fn repeated_causes_are_said_once() {
        let inner = e("No such file or directory", None);
        let mid = e("list data/params: No such file or directory", Some(inner));
        let outer = e("loading parameters", Some(mid));
        let mut chain: Vec<&(dyn Error + 'static)> = vec![&outer];
        let mut at: &(dyn Error + 'static) = &outer;
        while let Some(next) = at.source() {
            chain.push(next);
            at = next;
        }
        assert_eq!(
            causes_once(chain),
            "loading parameters: list data/params: No such file or directory"
        );
    }
}
