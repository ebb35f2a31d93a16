//! A row of the comparison: the paper's figure, xentinel's, the tolerance
//! declared with it, and whether it fitted a parameter or was held out.

/// Whether a row fitted a parameter or was predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Fit,
    HeldOut,
    /// No paper figure: shown for context.
    Info,
}

/// A tolerance declared with the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tol {
    /// `paper / f ≤ model ≤ paper × f`.
    Ratio(f64),
    /// `|model − paper| ≤ a`.
    Abs(f64),
    /// Either.
    RatioOrAbs(f64, f64),
}

impl Tol {
    pub(super) fn ok(self, paper: f64, model: f64) -> bool {
        let ratio = |f: f64| paper > 0.0 && model / paper <= f && model / paper >= 1.0 / f;
        match self {
            Tol::Ratio(f) => ratio(f),
            Tol::Abs(a) => (model - paper).abs() <= a,
            Tol::RatioOrAbs(f, a) => ratio(f) || (model - paper).abs() <= a,
        }
    }

    pub(super) fn describe(self) -> String {
        match self {
            Tol::Ratio(f) => format!("×/÷{f}"),
            Tol::Abs(a) => format!("±{a}"),
            Tol::RatioOrAbs(f, a) => format!("×/÷{f} or ±{a}"),
        }
    }
}

/// One figure: the paper's, xentinel's, and how they compare.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub paper: Option<f64>,
    pub model: f64,
    pub tol: Option<Tol>,
    pub role: Role,
}

impl Row {
    pub(super) fn new(label: &str, paper: f64, model: f64, tol: Tol, role: Role) -> Self {
        Row {
            label: label.into(),
            paper: Some(paper),
            model,
            tol: Some(tol),
            role,
        }
    }

    pub(super) fn info(label: &str, model: f64) -> Self {
        Row {
            label: label.into(),
            paper: None,
            model,
            tol: None,
            role: Role::Info,
        }
    }

    /// model / paper, when the paper's figure is not zero.
    pub fn ratio(&self) -> Option<f64> {
        self.paper.filter(|p| *p != 0.0).map(|p| self.model / p)
    }

    /// Within tolerance; `None` for an information row.
    pub fn ok(&self) -> Option<bool> {
        Some(self.tol?.ok(self.paper?, self.model))
    }

    pub(super) fn role_str(&self) -> &'static str {
        match self.role {
            Role::Fit => "fit",
            Role::HeldOut => "held out",
            Role::Info => "info",
        }
    }
}

/// One table of the paper.
#[derive(Debug, Clone)]
pub struct Table {
    pub number: u8,
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}
