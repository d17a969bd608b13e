//! A QR code of a login address, for a phone to scan over any SSH session: drawn with
//! half-block characters, two modules a character cell, with its quiet zone. Pure: the app
//! and the CLI decide where it goes and whether it fits.

use qrcode::{Color, EcLevel, QrCode};

/// Modules of light margin around the code; scanners need some, and terminals are tight.
const QUIET: usize = 2;

/// A QR code as a grid of modules, margin included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qr {
    /// Modules a side.
    side: usize,
    /// Row by row: `true` for a dark module.
    dark: Vec<bool>,
}

/// One character cell: whether its upper and its lower module are dark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub upper_dark: bool,
    pub lower_dark: bool,
}

impl Qr {
    /// The code of `text` at the lowest error correction that holds it (the smallest code);
    /// `None` when no QR code can hold it.
    pub fn of(text: &str) -> Option<Self> {
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).ok()?;
        let inner = code.width();
        let side = inner + 2 * QUIET;
        let colors = code.to_colors();
        let mut dark = vec![false; side * side];
        for (i, color) in colors.iter().enumerate() {
            let (row, col) = (i / inner + QUIET, i % inner + QUIET);
            dark[row * side + col] = *color == Color::Dark;
        }
        Some(Self { side, dark })
    }

    /// Character cells across.
    pub fn columns(&self) -> usize {
        self.side
    }

    /// Character rows down (two modules a row).
    pub fn rows(&self) -> usize {
        self.side.div_ceil(2)
    }

    fn is_dark(&self, row: usize, col: usize) -> bool {
        row < self.side && self.dark[row * self.side + col]
    }

    /// The cells, row by row.
    pub fn cells(&self) -> Vec<Vec<Cell>> {
        (0..self.rows())
            .map(|r| {
                (0..self.side)
                    .map(|c| Cell {
                        upper_dark: self.is_dark(2 * r, c),
                        lower_dark: self.is_dark(2 * r + 1, c),
                    })
                    .collect()
            })
            .collect()
    }

    /// For a terminal: white on black set explicitly (right on light and dark themes alike),
    /// the light modules drawn as ink.
    pub fn for_terminal(&self) -> String {
        let mut out = String::new();
        for row in self.cells() {
            out.push_str("\x1b[97;40m");
            for cell in row {
                out.push(ink(cell));
            }
            out.push_str("\x1b[0m\n");
        }
        out
    }
}

/// The half-block that inks a cell's light modules.
pub fn ink(cell: Cell) -> char {
    match (cell.upper_dark, cell.lower_dark) {
        (false, false) => '█',
        (false, true) => '▀',
        (true, false) => '▄',
        (true, true) => ' ',
    }
}

#[cfg(test)]
mod tests {
    use tokdeck_testkit::qr::{cell_of, decode};

    use super::*;

    #[test]
    fn the_cells_carry_the_address_and_the_terminal_text_too() {
        let url = "https://auth.example.com/device?user_code=WDJB-MJHT";
        let qr = Qr::of(url).unwrap();
        assert_eq!(qr.rows(), qr.columns().div_ceil(2));
        let cells: Vec<Vec<(bool, bool)>> = qr
            .cells()
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|c| (c.upper_dark, c.lower_dark))
                    .collect()
            })
            .collect();
        assert_eq!(decode(&cells).as_deref(), Some(url));
        // The terminal text: strip the colours, read the inks back.
        let text = qr
            .for_terminal()
            .replace("\x1b[97;40m", "")
            .replace("\x1b[0m", "");
        let inked: Vec<Vec<(bool, bool)>> = text
            .lines()
            .map(|l| l.chars().map(cell_of).collect())
            .collect();
        let from_text = decode(&inked).unwrap();
        assert_eq!(from_text, url);
    }

    #[test]
    fn text_no_code_can_hold_is_none() {
        assert!(Qr::of(&"x".repeat(8000)).is_none());
    }
}
