//! The model files, where they come from and where they are kept.
//!
//! Both models live in the Hugging Face repository [`HF_REPO`] (`livekit/turn-detector`), at
//! pinned revisions (git tags): [`ModelKind::English`] at `v1.2.2-en` and
//! [`ModelKind::Multilingual`] at `v0.4.1-intl`, as in the reference plugin. Each revision
//! provides four files, downloaded from
//! `<base>/livekit/turn-detector/resolve/<revision>/<path>` where `<base>` is
//! `https://huggingface.co` unless the environment variable
//! [`HF_URL_ENV`](livekit_agents::download::HF_URL_ENV) (`LIVEKIT_AGENTS_HF_URL`) names a mirror:
//!
//! | path | what |
//! |---|---|
//! | `onnx/model_q8.onnx` | the INT8 ONNX model (`input_ids` int64 `[1, seq]` → per-position probability) |
//! | `tokenizer.json` | the tokenizer |
//! | `tokenizer_config.json` | special tokens and the chat template |
//! | `languages.json` | supported languages and their "unlikely" thresholds |
//!
//! They are stored in the cache ([`livekit_agents::download::cache_dir`]) under
//! `turn-detector/<revision>/<path>`.
//!
//! **Integrity.** The revisions are pinned by tag, but the sizes and sha256 of the real files
//! could not be recorded: Hugging Face was not reachable where this crate was written. The
//! declarations therefore carry no checksum ([`FileSpec::sha256`] is `None`), and
//! `download-files` accepts whatever the pinned revision serves over HTTPS. To pin the content,
//! fill [`KNOWN_CHECKSUMS`] with `(file name, sha256, size)` once measured; the downloader then
//! verifies them. Tests use the tiny generated model in `testdata/` served from 127.0.0.1.

use std::path::PathBuf;

use livekit_agents::download::{self, DownloadOptions, FileSpec, Source};

use crate::error::LoadError;

/// The Hugging Face repository of both models.
pub const HF_REPO: &str = "livekit/turn-detector";
/// Revision (tag) of the English model.
pub const ENGLISH_REVISION: &str = "v1.2.2-en";
/// Revision (tag) of the multilingual model.
pub const MULTILINGUAL_REVISION: &str = "v0.4.1-intl";
/// The ONNX model, relative to a revision.
pub const ONNX_FILE: &str = "onnx/model_q8.onnx";
/// The tokenizer, relative to a revision.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The tokenizer config (special tokens, chat template), relative to a revision.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// The per-language thresholds, relative to a revision.
pub const LANGUAGES_FILE: &str = "languages.json";
/// Every file of a revision.
pub const MODEL_FILES: [&str; 4] = [
    ONNX_FILE,
    TOKENIZER_FILE,
    TOKENIZER_CONFIG_FILE,
    LANGUAGES_FILE,
];
/// Folder of this plugin's files inside the cache.
pub const CACHE_FOLDER: &str = "turn-detector";
/// Name under which the files are registered in the core download registry.
pub const PLUGIN_NAME: &str = "turn-detector";
/// License of the model files.
pub const LICENSE: &str = "LiveKit Model License (livekit/turn-detector)";

/// Known `(cache file name, sha256, size)` of the real files. Empty: they could not be measured
/// offline (see the module docs); entries added here are verified by `download-files`.
pub const KNOWN_CHECKSUMS: &[(&str, &str, u64)] = &[];

/// Which of the two models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// English only, smaller and faster.
    English,
    /// English and 13 other languages.
    Multilingual,
}

impl ModelKind {
    /// The pinned Hugging Face revision.
    pub fn revision(self) -> &'static str {
        match self {
            ModelKind::English => ENGLISH_REVISION,
            ModelKind::Multilingual => MULTILINGUAL_REVISION,
        }
    }

    /// Short name for logs (the detector's `label()`).
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::English => "livekit-turn-detector-en",
            ModelKind::Multilingual => "livekit-turn-detector-multilingual",
        }
    }

    pub(crate) fn thread_label(self) -> &'static str {
        match self {
            ModelKind::English => "eou-en",
            ModelKind::Multilingual => "eou-intl",
        }
    }

    /// Whether messages are normalized (NFKC, lower case, no punctuation but `'`/`-`) before
    /// the chat template. The reference runner (`_EUORunnerBase._format_chat_ctx`) applies the
    /// normalization for both models, so both do here.
    pub fn normalizes_text(self) -> bool {
        true
    }

    /// The cache file name of `path` (one of [`MODEL_FILES`]) for this model.
    pub fn cache_file_name(self, path: &str) -> String {
        format!("{CACHE_FOLDER}/{}/{path}", self.revision())
    }

    /// The declarations of this model's files (Hugging Face source, base URL overridable by
    /// `LIVEKIT_AGENTS_HF_URL`).
    pub fn files(self) -> Vec<FileSpec> {
        MODEL_FILES
            .iter()
            .map(|path| {
                let name = self.cache_file_name(path);
                let source =
                    Source::hugging_face(format!("{HF_REPO}/resolve/{}/{path}", self.revision()));
                let mut spec = FileSpec::new(name.clone(), source).with_license(LICENSE);
                if let Some((_, sha, size)) = KNOWN_CHECKSUMS.iter().find(|(n, _, _)| *n == name) {
                    spec = spec.with_sha256(*sha).with_size(*size);
                }
                spec
            })
            .collect()
    }

    /// The folder holding this model's files in the default cache, after checking that every
    /// file is there (the error names the `download-files` command).
    pub fn cache_dir(self) -> Result<PathBuf, LoadError> {
        self.dir_in(&download::cache_dir())
    }

    /// Like [`ModelKind::cache_dir`] for another cache folder.
    pub fn dir_in(self, cache_dir: &std::path::Path) -> Result<PathBuf, LoadError> {
        for spec in self.files() {
            spec.find_in(cache_dir)
                .map_err(|e| LoadError::MissingFile {
                    path: e.path.clone(),
                })?;
        }
        Ok(cache_dir.join(CACHE_FOLDER).join(self.revision()))
    }
}

/// Both models' files.
pub fn all_files() -> Vec<FileSpec> {
    let mut files = ModelKind::English.files();
    files.extend(ModelKind::Multilingual.files());
    files
}

/// Declares both models' files, and the ONNX Runtime library they need, in the core download
/// registry (so `download-files` fetches them).
pub fn register_files() {
    download::register_files(PLUGIN_NAME, all_files());
    livekit_agents_onnx::register_files();
}

/// Downloads `kind`'s files and the ONNX Runtime library into the default cache.
pub async fn download(kind: ModelKind) -> Result<(), LoadError> {
    download_with(kind, &DownloadOptions::default()).await
}

/// Downloads `kind`'s files and the ONNX Runtime library with `options` (cache folder,
/// retries, progress bars).
pub async fn download_with(kind: ModelKind, options: &DownloadOptions) -> Result<(), LoadError> {
    let mut files = kind.files();
    files.extend(livekit_agents_onnx::runtime_files());
    download_specs(&files, options).await
}

/// Downloads exactly `files` (e.g. [`ModelKind::files`] with another source) with `options`.
pub async fn download_specs(
    files: &[FileSpec],
    options: &DownloadOptions,
) -> Result<(), LoadError> {
    let report = download::download_all(files, options).await;
    report
        .into_result()
        .map(|_| ())
        .map_err(|e| LoadError::Download(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declares_pinned_hugging_face_files() {
        let files = ModelKind::Multilingual.files();
        assert_eq!(files.len(), 4);
        let onnx = &files[0];
        assert_eq!(
            onnx.file_name,
            "turn-detector/v0.4.1-intl/onnx/model_q8.onnx"
        );
        assert_eq!(
            onnx.source.path,
            "livekit/turn-detector/resolve/v0.4.1-intl/onnx/model_q8.onnx"
        );
        assert_eq!(onnx.source.default_base_url, download::HF_DEFAULT_URL);
        assert_eq!(
            onnx.source.base_url_env.as_deref(),
            Some(download::HF_URL_ENV)
        );
        assert!(onnx.sha256.is_none(), "no checksum is known offline");
        let en: Vec<String> = ModelKind::English
            .files()
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert!(en.contains(&"turn-detector/v1.2.2-en/languages.json".to_owned()));
        assert_eq!(all_files().len(), 8);
    }

    #[test]
    fn missing_files_name_the_download_command() {
        let dir = std::env::temp_dir().join(format!("eou-missing-{}", std::process::id()));
        let err = ModelKind::English.dir_in(&dir).unwrap_err();
        assert!(err.to_string().contains("download-files"), "{err}");
    }
}
