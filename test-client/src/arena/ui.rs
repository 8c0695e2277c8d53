//! Drawing the arena with ratatui: the board (cropped around the player,
//! or scaled to show all of it), a legend naming every player, and a
//! status line. Nothing here reads the socket or the keyboard; it draws a
//! [`Game`] as it is. The geometry ([`Viewport`]) is plain arithmetic,
//! tested without a terminal; the drawing is tested on ratatui's in-memory
//! backend.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::game::{Game, Shown, BOARD};

/// Columns of the legend beside the board.
const LEGEND_WIDTH: u16 = 26;

/// How the board maps onto the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zoom {
    /// One board square per character cell (two columns per square when
    /// the whole board fits that way, so it looks square), cropped to the
    /// terminal and centred on the player.
    Near,
    /// The whole board, each character cell standing for a block of
    /// squares.
    Whole,
}

impl Zoom {
    /// The other zoom (the `z` key).
    pub fn toggled(self) -> Self {
        match self {
            Zoom::Near => Zoom::Whole,
            Zoom::Whole => Zoom::Near,
        }
    }
}

/// Which part of the board is shown, and how big a square is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    /// Board column of the leftmost square shown.
    pub x0: i32,
    /// Board row of the top square shown.
    pub y0: i32,
    /// Squares shown across (after scaling: character cells across).
    pub cols: i32,
    /// Squares shown down (character rows).
    pub rows: i32,
    /// Board squares per character cell, each way (1 when near).
    pub scale: i32,
    /// Terminal columns per cell (2 when the board is drawn square).
    pub cell_width: u16,
}

impl Viewport {
    /// The viewport for a board area of `width` x `height` character cells
    /// at `zoom`, centred on `center` (clamped so no space is wasted past
    /// the board's edges).
    pub fn new(width: u16, height: u16, zoom: Zoom, center: (i32, i32)) -> Self {
        let (w, h) = (i32::from(width.max(1)), i32::from(height.max(1)));
        match zoom {
            Zoom::Whole => {
                let scale = div_ceil(BOARD, w).max(div_ceil(BOARD, h)).max(1);
                Self {
                    x0: 0,
                    y0: 0,
                    cols: div_ceil(BOARD, scale),
                    rows: div_ceil(BOARD, scale),
                    scale,
                    cell_width: 1,
                }
            }
            Zoom::Near => {
                let cell_width: u16 = if w >= 2 * BOARD { 2 } else { 1 };
                let cols = (w / i32::from(cell_width)).min(BOARD);
                let rows = h.min(BOARD);
                Self {
                    x0: (center.0 - cols / 2).clamp(0, BOARD - cols),
                    y0: (center.1 - rows / 2).clamp(0, BOARD - rows),
                    cols,
                    rows,
                    scale: 1,
                    cell_width,
                }
            }
        }
    }

    /// The cell (column, row) that shows board square `(x, y)`, if shown.
    pub fn cell(&self, (x, y): (i32, i32)) -> Option<(i32, i32)> {
        let (c, r) = (
            (x - self.x0).div_euclid(self.scale),
            (y - self.y0).div_euclid(self.scale),
        );
        (x >= self.x0 && y >= self.y0 && c < self.cols && r < self.rows).then_some((c, r))
    }

    /// Terminal columns the board takes.
    pub fn width(&self) -> u16 {
        u16::try_from(self.cols).unwrap_or(u16::MAX) * self.cell_width
    }
}

fn div_ceil(a: i32, b: i32) -> i32 {
    (a + b - 1) / b
}

/// What the view shows besides the game: the zoom and the connection.
#[derive(Debug, Clone)]
pub struct Screen {
    /// The board's zoom.
    pub zoom: Zoom,
    /// A word on the connection ("resuming…"), if it is not simply up.
    pub connection: Option<String>,
}

/// Draws the whole view into `frame`.
pub fn draw(frame: &mut Frame<'_>, game: &Game, screen: &Screen) {
    let [main, status] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(frame.area());
    let [board_area, legend_area] =
        Layout::horizontal([Constraint::Min(4), Constraint::Length(LEGEND_WIDTH)]).areas(main);
    let shown = game.shown();
    draw_board(frame, board_area, game, &shown, screen.zoom);
    draw_legend(frame, legend_area, &shown);
    frame.render_widget(Paragraph::new(status_lines(game, screen)), status);
}

/// The board inside a titled border, centred in `area`.
fn draw_board(frame: &mut Frame<'_>, area: Rect, game: &Game, shown: &[Shown], zoom: Zoom) {
    let inner_w = area.width.saturating_sub(2);
    let inner_h = area.height.saturating_sub(2);
    let view = Viewport::new(inner_w, inner_h, zoom, game.pos);
    let rows = board_rows(&view, shown);
    let w = view.width() + 2;
    let h = u16::try_from(view.rows).unwrap_or(u16::MAX) + 2;
    let rect = Rect {
        x: area.x + area.width.saturating_sub(w) / 2,
        y: area.y + area.height.saturating_sub(h) / 2,
        width: w.min(area.width),
        height: h.min(area.height),
    };
    let title = format!(
        " {} x {}..{} y {}..{} ",
        game.room,
        view.x0,
        view.x0 + view.cols * view.scale - 1,
        view.y0,
        view.y0 + view.rows * view.scale - 1
    );
    let block = Block::default().borders(Borders::ALL).title(title);
    frame.render_widget(Paragraph::new(rows).block(block), rect);
}

/// The board's rows: `·` for an empty cell, a player's glyph where one
/// stands (this client's `@` over anyone sharing its cell).
fn board_rows(view: &Viewport, shown: &[Shown]) -> Vec<Line<'static>> {
    let (cols, rows) = (view.cols.max(0) as usize, view.rows.max(0) as usize);
    let mut grid: Vec<Vec<Option<&Shown>>> = vec![vec![None; cols]; rows];
    // `shown` lists this client first; keep the first one per cell.
    for s in shown {
        if let Some((c, r)) = view.cell(s.pos) {
            let cell = &mut grid[r as usize][c as usize];
            if cell.is_none() {
                *cell = Some(s);
            }
        }
    }
    let pad = " ".repeat(usize::from(view.cell_width) - 1);
    grid.into_iter()
        .map(|row| {
            let spans: Vec<Span<'static>> = row
                .into_iter()
                .map(|cell| match cell {
                    None => Span::styled(format!("·{pad}"), Style::new().fg(Color::DarkGray)),
                    Some(s) => Span::styled(format!("{}{pad}", s.glyph), glyph_style(s)),
                })
                .collect();
            Line::from(spans)
        })
        .collect()
}

/// Colours for players: this client bold yellow, the others by glyph.
fn glyph_style(s: &Shown) -> Style {
    const OTHERS: [Color; 6] = [
        Color::Cyan,
        Color::Green,
        Color::Magenta,
        Color::LightBlue,
        Color::LightRed,
        Color::White,
    ];
    if s.me {
        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
            .fg(OTHERS[s.glyph as usize % OTHERS.len()])
            .add_modifier(Modifier::BOLD)
    }
}

/// One line per player: glyph, who, where.
fn draw_legend(frame: &mut Frame<'_>, area: Rect, shown: &[Shown]) {
    let lines: Vec<Line<'static>> = shown
        .iter()
        .map(|s| {
            let who = if s.me {
                format!("you {}", s.user_id)
            } else {
                format!("user {}", s.user_id)
            };
            Line::from(vec![
                Span::styled(s.glyph.to_string(), glyph_style(s)),
                Span::raw(format!(" {who} ({},{})", s.pos.0, s.pos.1)),
            ])
        })
        .collect();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" players {} ", shown.len()));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The two status lines: the numbers, then the keys (or the last message).
pub fn status_lines(game: &Game, screen: &Screen) -> Vec<Line<'static>> {
    let ms = |us: Option<u64>| us.map_or("-".to_owned(), |us| format!("{:.1}", us as f64 / 1000.0));
    let tick = game.ticks.last.map_or("-".to_owned(), |t| t.to_string());
    let rtt = game.last_move_rtt.map_or("-".to_owned(), |d| {
        format!("{:.1}", d.as_secs_f64() * 1000.0)
    });
    let numbers = format!(
        "room {} | tick {} ({}/s) | players {} | move rtt {} ms | tick->client {} ms (p50 {} max {}) | missed {} late {}",
        game.room,
        tick,
        game.tick_hz,
        game.players.len(),
        rtt,
        ms(game.tick_latency.last()),
        ms(game.tick_latency.median()),
        ms(game.tick_latency.max()),
        game.ticks.missed,
        game.ticks.out_of_order,
    );
    let second = match (&screen.connection, &game.message) {
        (Some(c), _) => Line::styled(c.clone(), Style::new().fg(Color::Yellow)),
        (None, Some(m)) => Line::styled(m.clone(), Style::new().fg(Color::LightRed)),
        (None, None) => Line::styled(
            "arrows move | z zoom | q quit",
            Style::new().fg(Color::DarkGray),
        ),
    };
    vec![Line::raw(numbers), second]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::proto::{JoinResponse, Player, State};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    #[test]
    fn a_big_terminal_shows_the_whole_board_two_columns_a_square() {
        let v = Viewport::new(230, 120, Zoom::Near, (50, 50));
        assert_eq!((v.x0, v.y0, v.cols, v.rows), (0, 0, 100, 100));
        assert_eq!((v.cell_width, v.width()), (2, 200));
        assert_eq!(v.cell((99, 99)), Some((99, 99)));
    }

    #[test]
    fn a_small_terminal_crops_around_the_player_within_the_board() {
        let v = Viewport::new(40, 20, Zoom::Near, (50, 50));
        assert_eq!(
            (v.x0, v.y0, v.cols, v.rows, v.cell_width),
            (30, 40, 40, 20, 1)
        );
        assert_eq!(v.cell((50, 50)), Some((20, 10)), "the player in the middle");
        assert_eq!(v.cell((29, 50)), None);
        assert_eq!(v.cell((70, 50)), None);
        let corner = Viewport::new(40, 20, Zoom::Near, (0, 0));
        assert_eq!((corner.x0, corner.y0), (0, 0), "no space past the edge");
        let far = Viewport::new(40, 20, Zoom::Near, (99, 99));
        assert_eq!((far.x0, far.y0), (60, 80));
        assert_eq!(far.cell((99, 99)), Some((39, 19)));
    }

    #[test]
    fn whole_zoom_scales_the_board_into_the_terminal() {
        let v = Viewport::new(80, 24, Zoom::Whole, (50, 50));
        assert_eq!(v.scale, 5, "100 rows into 24");
        assert_eq!((v.cols, v.rows), (20, 20));
        assert_eq!(v.cell((0, 0)), Some((0, 0)));
        assert_eq!(v.cell((4, 4)), Some((0, 0)));
        assert_eq!(v.cell((99, 99)), Some((19, 19)));
        let roomy = Viewport::new(150, 120, Zoom::Whole, (0, 0));
        assert_eq!((roomy.scale, roomy.cols), (1, 100));
        assert_eq!(Zoom::Near.toggled(), Zoom::Whole);
    }

    fn screen_text(game: &Game, zoom: Zoom, (w, h): (u16, u16)) -> String {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        let screen = Screen {
            zoom,
            connection: None,
        };
        terminal.draw(|f| draw(f, game, &screen)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..h {
            for x in 0..w {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn the_view_shows_players_legend_and_status() {
        let mut game = Game::new(
            7,
            &JoinResponse {
                room: "r1".into(),
                tick_hz: 20,
                x: 0,
                y: 0,
            },
        );
        let players = vec![
            Player {
                user_id: 7,
                x: 50,
                y: 50,
            },
            Player {
                user_id: 8,
                x: 52,
                y: 50,
            },
        ];
        game.apply_state(
            State {
                room: "r1".into(),
                tick: 41,
                players,
                sent_unix_us: 1_000,
            },
            3_500,
        );
        let text = screen_text(&game, Zoom::Near, (80, 24));
        assert!(text.contains("@·A"), "{text}");
        assert!(text.contains("@ you 7 (50,50)"), "{text}");
        assert!(text.contains("A user 8 (52,50)"), "{text}");
        assert!(
            text.contains("room r1 | tick 41 (20/s) | players 2"),
            "{text}"
        );
        assert!(text.contains("tick->client 2.5 ms"), "{text}");
        assert!(text.contains("q quit"), "{text}");
        let whole = screen_text(&game, Zoom::Whole, (80, 24));
        assert!(whole.contains(" r1 x 0..99 y 0..99 "), "{whole}");
    }
}
