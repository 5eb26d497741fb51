//! Tiling: panes live in a tree of splits, as in tmux. The tree only
//! knows pane ids; rectangles are computed at render time.

use ratatui::layout::{Constraint, Direction, Layout, Rect};

/// Identifies a pane.
pub type PaneId = u64;

/// Which way a split divides its area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Children side by side (`|`).
    Horizontal,
    /// Children stacked (`-`).
    Vertical,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Leaf(PaneId),
    Split(Split, Vec<Node>),
}

/// The tiling of the pane area.
#[derive(Debug, Clone, Default)]
pub struct Tiling {
    root: Option<Node>,
}

impl Tiling {
    /// Whether there is no pane.
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// Adds `pane` next to `beside` (or as the first pane), splitting that
    /// pane's area in `split` direction.
    pub fn insert(&mut self, pane: PaneId, beside: Option<PaneId>, split: Split) {
        let Some(root) = self.root.as_mut() else {
            self.root = Some(Node::Leaf(pane));
            return;
        };
        let target = beside
            .filter(|b| contains(root, *b))
            .unwrap_or_else(|| last_leaf(root));
        insert_at(root, target, pane, split);
    }

    /// Removes a pane; its sibling takes the space.
    pub fn remove(&mut self, pane: PaneId) {
        if let Some(root) = self.root.take() {
            self.root = remove_from(root, pane);
        }
    }

    /// Pane ids in reading order (for Tab).
    pub fn order(&self) -> Vec<PaneId> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            collect(root, &mut out);
        }
        out
    }

    /// The rectangle of every pane inside `area`.
    pub fn rects(&self, area: Rect) -> Vec<(PaneId, Rect)> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            place(root, area, &mut out);
        }
        out
    }
}

fn contains(node: &Node, id: PaneId) -> bool {
    match node {
        Node::Leaf(l) => *l == id,
        Node::Split(_, children) => children.iter().any(|c| contains(c, id)),
    }
}

fn last_leaf(node: &Node) -> PaneId {
    match node {
        Node::Leaf(l) => *l,
        Node::Split(_, children) => children.last().map_or(0, last_leaf),
    }
}

fn insert_at(node: &mut Node, target: PaneId, pane: PaneId, split: Split) -> bool {
    match node {
        Node::Leaf(l) if *l == target => {
            *node = Node::Split(split, vec![Node::Leaf(target), Node::Leaf(pane)]);
            true
        }
        Node::Leaf(_) => false,
        Node::Split(dir, children) => {
            let Some(i) = children.iter().position(|c| contains(c, target)) else {
                return false;
            };
            // Same direction as this split: become a sibling (even tiles,
            // as tmux's even layouts), not a nested split.
            if *dir == split && matches!(children[i], Node::Leaf(_)) {
                children.insert(i + 1, Node::Leaf(pane));
                true
            } else {
                insert_at(&mut children[i], target, pane, split)
            }
        }
    }
}

fn remove_from(node: Node, pane: PaneId) -> Option<Node> {
    match node {
        Node::Leaf(l) if l == pane => None,
        Node::Leaf(l) => Some(Node::Leaf(l)),
        Node::Split(dir, children) => {
            let mut kept: Vec<Node> = children
                .into_iter()
                .filter_map(|c| remove_from(c, pane))
                .collect();
            match kept.len() {
                0 => None,
                1 => kept.pop(),
                _ => Some(Node::Split(dir, kept)),
            }
        }
    }
}

fn collect(node: &Node, out: &mut Vec<PaneId>) {
    match node {
        Node::Leaf(l) => out.push(*l),
        Node::Split(_, children) => children.iter().for_each(|c| collect(c, out)),
    }
}

fn place(node: &Node, area: Rect, out: &mut Vec<(PaneId, Rect)>) {
    match node {
        Node::Leaf(l) => out.push((*l, area)),
        Node::Split(dir, children) => {
            let direction = match dir {
                Split::Horizontal => Direction::Horizontal,
                Split::Vertical => Direction::Vertical,
            };
            let n = u32::try_from(children.len()).unwrap_or(1).max(1);
            let areas = Layout::default()
                .direction(direction)
                .constraints(children.iter().map(|_| Constraint::Ratio(1, n)))
                .split(area);
            for (child, a) in children.iter().zip(areas.iter()) {
                place(child, *a, out);
            }
        }
    }
}

/// A direction to move focus in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// Left.
    Left,
    /// Right.
    Right,
    /// Up.
    Up,
    /// Down.
    Down,
}

/// The nearest rectangle from `from` in direction `toward`.
pub fn neighbour(rects: &[(PaneId, Rect)], from: PaneId, toward: Toward) -> Option<PaneId> {
    let (_, r) = rects.iter().find(|(id, _)| *id == from)?;
    let centre = |r: &Rect| {
        (
            i32::from(r.x) * 2 + i32::from(r.width),
            i32::from(r.y) * 2 + i32::from(r.height),
        )
    };
    let (cx, cy) = centre(r);
    rects
        .iter()
        .filter(|(id, _)| *id != from)
        .filter(|(_, o)| match toward {
            Toward::Left => o.x + o.width <= r.x,
            Toward::Right => o.x >= r.x + r.width,
            Toward::Up => o.y + o.height <= r.y,
            Toward::Down => o.y >= r.y + r.height,
        })
        .min_by_key(|(_, o)| {
            let (ox, oy) = centre(o);
            (ox - cx).abs() + (oy - cy).abs()
        })
        .map(|(id, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tile_and_removal_gives_the_space_back() {
        let mut t = Tiling::default();
        t.insert(1, None, Split::Horizontal);
        t.insert(2, Some(1), Split::Horizontal);
        t.insert(3, Some(2), Split::Vertical);
        let area = Rect::new(0, 0, 100, 40);
        let rects = t.rects(area);
        assert_eq!(t.order(), vec![1, 2, 3]);
        assert_eq!(rects[0].1, Rect::new(0, 0, 50, 40));
        assert_eq!(rects[1].1, Rect::new(50, 0, 50, 20));
        assert_eq!(rects[2].1, Rect::new(50, 20, 50, 20));
        assert_eq!(neighbour(&rects, 1, Toward::Right), Some(2));
        assert_eq!(neighbour(&rects, 2, Toward::Down), Some(3));
        assert_eq!(neighbour(&rects, 3, Toward::Left), Some(1));
        t.remove(2);
        assert_eq!(
            t.rects(area),
            vec![(1, Rect::new(0, 0, 50, 40)), (3, Rect::new(50, 0, 50, 40))]
        );
        t.remove(1);
        t.remove(3);
        assert!(t.is_empty());
    }

    #[test]
    fn same_direction_splits_are_even() {
        let mut t = Tiling::default();
        for id in 1..=3 {
            t.insert(id, Some(id.saturating_sub(1)), Split::Horizontal);
        }
        let widths: Vec<u16> = t
            .rects(Rect::new(0, 0, 90, 10))
            .iter()
            .map(|(_, r)| r.width)
            .collect();
        assert_eq!(widths, vec![30, 30, 30]);
    }
}
