//! Writes `steps/` from `solutions/`: the same code, with the blocks this
//! step asks the student to write replaced by `todo!("<hint>")`.
//!
//! A block in a solution looks like
//!
//! ```text
//!     // STUDENT 03: what to write, and where to look
//!     ...the reference code...
//!     // STUDENT END
//! ```
//!
//! In step 03's skeleton it becomes `todo!("what to write, ...")`. Later
//! steps carry the same file, marked 03: there only the marker lines go and
//! the code stays, since the student wrote it two chapters ago. So a block
//! must be a whole function body, or the skeleton would not compile.
//! A step's README.md is its chapter, written by hand: left alone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::steps::Step;

const BLOCK_START: &str = "// STUDENT ";
const BLOCK_END: &str = "// STUDENT END";
const CHAPTER: &str = "README.md";

/// One `todo!()` a skeleton asks the student to fill in.
pub struct Hint {
    pub file: String,
    pub line: usize,
    pub text: String,
}

/// What the skeleton of a step must contain: relative path → content.
pub fn skeleton_files(step: &Step) -> Result<BTreeMap<PathBuf, String>> {
    let mut files = BTreeMap::new();
    let solution = step.solution_dir();
    for relative in source_files(&solution)? {
        let text = fs::read_to_string(solution.join(&relative))
            .with_context(|| format!("reading {}", solution.join(&relative).display()))?;
        let generated = if relative == Path::new("Cargo.toml") {
            skeleton_manifest(&text, step)
        } else if relative.extension().is_some_and(|e| e == "rs") {
            let (code, _) = cut_student_blocks(&text, step.number)
                .with_context(|| format!("{}/{}", step.name, relative.display()))?;
            if relative == Path::new("src/main.rs") { with_header(&code, step) } else { code }
        } else {
            text
        };
        files.insert(relative, generated);
    }
    Ok(files)
}

/// The hints of the blocks a step cuts out, read from its solution.
pub fn hints(step: &Step) -> Result<Vec<Hint>> {
    let solution = step.solution_dir();
    let mut hints = Vec::new();
    for relative in source_files(&solution)? {
        if relative.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(solution.join(&relative))?;
            let (_, found) = cut_student_blocks(&text, step.number)?;
            // main.rs starts with the generated header.
            let offset = if relative == Path::new("src/main.rs") { with_header("", step).lines().count() } else { 0 };
            hints.extend(found.into_iter().map(|(line, text)| Hint {
                file: format!("steps/{}/{}", step.name, relative.display()),
                line: line + offset,
                text,
            }));
        }
    }
    Ok(hints)
}

/// Writes the skeleton; returns the files it changed.
pub fn write_skeleton(step: &Step) -> Result<Vec<PathBuf>> {
    let dir = step.skeleton_dir();
    let mut expected = skeleton_files(step)?;
    let mut changed = Vec::new();
    for (relative, _) in stale_files(step)? {
        let path = dir.join(&relative);
        match expected.remove(&relative) {
            Some(content) => {
                fs::create_dir_all(path.parent().unwrap_or(&dir))?;
                fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
            }
            None => fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?,
        }
        changed.push(relative);
    }
    Ok(changed)
}

/// Files of the skeleton that differ from what the generator writes, with
/// what is wrong with each ("differs", "missing", "not generated").
pub fn stale_files(step: &Step) -> Result<Vec<(PathBuf, &'static str)>> {
    let dir = step.skeleton_dir();
    let expected = skeleton_files(step)?;
    let mut stale = Vec::new();
    for (relative, content) in &expected {
        match fs::read_to_string(dir.join(relative)) {
            Ok(actual) if &actual == content => {}
            Ok(_) => stale.push((relative.clone(), "differs")),
            Err(_) => stale.push((relative.clone(), "missing")),
        }
    }
    if dir.is_dir() {
        for relative in source_files(&dir)? {
            if !expected.contains_key(&relative) {
                stale.push((relative, "not generated"));
            }
        }
    }
    Ok(stale)
}

/// Every file under `dir` except the chapter and build output, relative.
fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = fs::read_dir(dir.join(&relative)).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                if entry.file_name() != "target" {
                    pending.push(path);
                }
            } else if path != Path::new(CHAPTER) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Cuts this step's blocks out of a source file; returns the new text and
/// each todo!()'s (line in the new text, hint).
pub fn cut_student_blocks(source: &str, step: u8) -> Result<(String, Vec<(usize, String)>)> {
    let mut out = String::new();
    let mut hints = Vec::new();
    let mut open: Option<(u8, usize)> = None;
    for (index, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with(BLOCK_END) {
            if open.take().is_none() {
                bail!("line {}: STUDENT END without a STUDENT block", index + 1);
            }
        } else if let Some(rest) = trimmed.strip_prefix(BLOCK_START) {
            if open.is_some() {
                bail!("line {}: a STUDENT block inside another", index + 1);
            }
            let (number, hint) = parse_block_start(rest).with_context(|| format!("line {}", index + 1))?;
            if number == step {
                // todo!() takes a format string: escape \ and ", double the
                // braces; the rest stays readable (apostrophes, dashes).
                let literal = hint.replace('\\', "\\\\").replace('"', "\\\"").replace('{', "{{").replace('}', "}}");
                out.push_str(&format!("{indent}todo!(\"{literal}\")\n"));
                // The line of the todo!() in the skeleton, which is shorter.
                hints.push((out.lines().count(), hint.to_string()));
            }
            open = Some((number, index + 1));
        } else if !matches!(open, Some((number, _)) if number == step) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some((_, line)) = open {
        bail!("line {line}: STUDENT block never ends (add `{BLOCK_END}`)");
    }
    Ok((out, hints))
}

/// "03: hint text" → (3, "hint text").
fn parse_block_start(rest: &str) -> Result<(u8, &str)> {
    let (number, hint) = rest.split_once(':').context("expected `// STUDENT NN: hint`")?;
    let number = number.trim().parse().context("the step number after STUDENT")?;
    Ok((number, hint.trim()))
}

/// Renames the package and its binary: `solution-03-x` → `step-03-x`.
fn skeleton_manifest(manifest: &str, step: &Step) -> String {
    let header = format!(
        "# Your crate for chapter {}. Generated from solutions/{} by scripts/gen-steps.\n",
        step.name, step.name
    );
    let renamed = manifest
        .replace(&format!("name = \"{}\"", step.solution_package()), &format!("name = \"{}\"", step.skeleton_package()))
        .replace(&format!("name = \"{}\"", step.solution_binary()), &format!("name = \"{}\"", step.skeleton_binary()));
    header + &renamed
}

fn with_header(code: &str, step: &Step) -> String {
    format!(
        "// Chapter {name}: fill in the todo!()s (`cargo lab hint {number:02}` lists them),\n\
         // then `cargo lab check {number:02}`. Generated from solutions/{name} by\n\
         // scripts/gen-steps: maintainers edit the solution, never this file.\n\n\
         // Until you write them, the todo!()s leave imports and arguments unused.\n\
         #![allow(unused)]\n\n{code}",
        name = step.name,
        number = step.number,
    )
}

#[cfg(test)]
mod tests {
    use super::cut_student_blocks;

    const SOURCE: &str = "fn a() {\n    // STUDENT 02: write a\n    1\n    // STUDENT END\n}\nfn b() {\n    // STUDENT 01: write \"b\"\n    2\n    // STUDENT END\n}\n";

    #[test]
    fn the_current_steps_blocks_become_todo() {
        let (code, hints) = cut_student_blocks(SOURCE, 2).unwrap();
        assert_eq!(code, "fn a() {\n    todo!(\"write a\")\n}\nfn b() {\n    2\n}\n");
        assert_eq!(hints, vec![(2, "write a".to_string())]);
        let (_, hints) = cut_student_blocks(&format!("{SOURCE}{SOURCE}"), 2).unwrap();
        assert_eq!(hints[1].0, 8, "the second todo!() is on line 8 of the skeleton");
    }

    #[test]
    fn hints_are_escaped_inside_todo() {
        let (code, _) = cut_student_blocks(SOURCE, 1).unwrap();
        assert!(code.contains("todo!(\"write \\\"b\\\"\")"), "{code}");
    }

    #[test]
    fn braces_in_a_hint_stay_text() {
        let (code, _) = cut_student_blocks("fn f() {\n    // STUDENT 03: return Ok({})\n    1\n    // STUDENT END\n}\n", 3).unwrap();
        assert!(code.contains("todo!(\"return Ok({{}})\")"), "{code}");
    }

    #[test]
    fn an_unterminated_block_is_an_error() {
        assert!(cut_student_blocks("// STUDENT 01: x\ncode\n", 1).is_err());
        assert!(cut_student_blocks("// STUDENT END\n", 1).is_err());
    }
}
