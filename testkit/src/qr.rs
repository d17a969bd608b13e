//! Reading back the QR codes tokdeck draws: half-block character cells, each holding an upper
//! and a lower module, the light modules inked (`█`, `▀`, `▄`, or a space for two dark ones).

/// Whether a drawn cell's upper and lower modules are dark.
pub fn cell_of(ink: char) -> (bool, bool) {
    match ink {
        '█' => (false, false),
        '▀' => (false, true),
        '▄' => (true, false),
        _ => (true, true),
    }
}

/// Decodes a code drawn as rows of cells, `(upper_dark, lower_dark)` each; `None` when no
/// code is found or it does not decode. A short row counts as dark past its end.
pub fn decode(rows: &[Vec<(bool, bool)>]) -> Option<String> {
    let side = rows.first()?.len();
    let scale = 4;
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(side * scale, rows.len() * 2 * scale, |x, y| {
            let (module_row, col) = (y / scale, x / scale);
            let (upper_dark, lower_dark) =
                rows[module_row / 2].get(col).copied().unwrap_or((true, true));
            let dark = if module_row % 2 == 0 { upper_dark } else { lower_dark };
            if dark { 0 } else { 255 }
        });
    let grids = image.detect_grids();
    if grids.len() != 1 {
        return None;
    }
    grids[0].decode().ok().map(|(_, text)| text)
}
