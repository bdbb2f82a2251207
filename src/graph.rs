//! The services' dependency graph (`dependsOn`), walked one way for both of
//! its users: validation looks for a cycle ([`Graph::cycle`]), the
//! migration orders services after their dependencies ([`Graph::order`]).

use std::collections::BTreeMap;

/// Services and what each depends on, by name.
#[derive(Debug, Default)]
pub struct Graph<'a> {
    edges: BTreeMap<&'a str, &'a [String]>,
}

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    Active,
    Done,
}

impl<'a> Graph<'a> {
    /// The graph of `(service, dependsOn)` pairs. A name given twice keeps
    /// its first edges (the manifest's lookup does the same).
    pub fn new(services: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let mut edges = BTreeMap::new();
        for (name, deps) in services {
            edges.entry(name).or_insert(deps);
        }
        Graph { edges }
    }

    /// The first dependency cycle, in name order, as a path that ends where
    /// it starts (`a -> b -> a`), or `None`.
    pub fn cycle(&self) -> Option<Vec<String>> {
        self.walk(self.edges.keys().copied(), |_| true).err()
    }

    /// `wanted`, each after those of its dependencies that are wanted too;
    /// otherwise in the order given. A cycle among them is the error.
    pub fn order(&self, wanted: &[String]) -> Result<Vec<String>, Vec<String>> {
        let order = self.walk(wanted.iter().map(String::as_str), |d| {
            wanted.iter().any(|w| w == d)
        })?;
        Ok(order.into_iter().map(str::to_owned).collect())
    }

    /// Depth-first from each root in turn, into the dependencies `enter`
    /// admits: every node visited, after its dependencies (post-order), or
    /// the first cycle met.
    fn walk<'w>(
        &'w self,
        roots: impl Iterator<Item = &'w str>,
        enter: impl Fn(&str) -> bool,
    ) -> Result<Vec<&'w str>, Vec<String>> {
        let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
        let mut out = Vec::new();
        for root in roots {
            let mut path = Vec::new();
            self.visit(root, &enter, &mut marks, &mut path, &mut out)?;
        }
        Ok(out)
    }

    fn visit<'w>(
        &'w self,
        node: &'w str,
        enter: &impl Fn(&str) -> bool,
        marks: &mut BTreeMap<&'w str, Mark>,
        path: &mut Vec<&'w str>,
        out: &mut Vec<&'w str>,
    ) -> Result<(), Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Active) => {
                let start = path.iter().position(|s| *s == node).unwrap_or(0);
                let mut cycle: Vec<String> =
                    path[start..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(node.to_owned());
                return Err(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Active);
        path.push(node);
        for dep in self.edges.get(node).copied().unwrap_or_default() {
            if enter(dep) {
                self.visit(dep, enter, marks, path, out)?;
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        out.push(node);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_first_cycle_in_name_order_is_a_path() {
        let a = deps(&["b"]);
        let b = deps(&["c"]);
        let c = deps(&["a"]);
        let g = Graph::new([("a", &a[..]), ("b", &b[..]), ("c", &c[..])]);
        assert_eq!(g.cycle(), Some(deps(&["a", "b", "c", "a"])));
        let none: Vec<String> = Vec::new();
        let g = Graph::new([("a", &a[..]), ("b", &none[..])]);
        assert_eq!(g.cycle(), None);
    }

    #[test]
    fn order_puts_wanted_dependencies_first_and_skips_the_rest() {
        // web -> db -> disk; only web and disk are wanted: db is not walked
        // through, so disk keeps its place after web.
        let web = deps(&["db"]);
        let db = deps(&["disk"]);
        let app = deps(&["web"]);
        let none: Vec<String> = Vec::new();
        let g = Graph::new([
            ("web", &web[..]),
            ("db", &db[..]),
            ("disk", &none[..]),
            ("app", &app[..]),
        ]);
        assert_eq!(g.order(&deps(&["web", "disk"])), Ok(deps(&["web", "disk"])));
        assert_eq!(
            g.order(&deps(&["app", "db", "web"])),
            Ok(deps(&["db", "web", "app"]))
        );
        let x = deps(&["y"]);
        let y = deps(&["x"]);
        let g = Graph::new([("x", &x[..]), ("y", &y[..])]);
        assert_eq!(g.order(&deps(&["x", "y"])), Err(deps(&["x", "y", "x"])));
    }
}
