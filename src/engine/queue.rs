//! The dependency queue: which tasks are ready, given which have finished.
//!
//! A task is ready when every task it depends on has finished successfully. Among ready tasks,
//! the one with the most transitive dependents goes first (cargo's heuristic: unblock the most
//! work early), ties broken by node index so the order is deterministic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Tracks readiness of `n` nodes connected by "must finish before" edges.
#[derive(Debug)]
pub(crate) struct DependencyQueue {
    waiting_on: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    priority: Vec<usize>,
    ready: BinaryHeap<(usize, Reverse<usize>)>,
    blocked: Vec<bool>,
}

impl DependencyQueue {
    /// `edges` are `(before, after)` pairs; the graph must be acyclic.
    pub(crate) fn new(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut waiting_on = vec![0; n];
        let mut dependents = vec![Vec::new(); n];
        for (before, after) in edges {
            dependents[before].push(after);
            waiting_on[after] += 1;
        }
        let priority = transitive_dependent_counts(&dependents);
        let ready = (0..n)
            .filter(|&node| waiting_on[node] == 0)
            .map(|node| (priority[node], Reverse(node)))
            .collect();
        Self {
            waiting_on,
            dependents,
            priority,
            ready,
            blocked: vec![false; n],
        }
    }

    /// The next ready node, if any.
    pub(crate) fn pop(&mut self) -> Option<usize> {
        self.ready.pop().map(|(_, Reverse(node))| node)
    }

    /// Put back a node that was popped but could not start yet.
    pub(crate) fn push_back(&mut self, node: usize) {
        self.ready.push((self.priority[node], Reverse(node)));
    }

    /// `node` succeeded: its dependents whose dependencies are all done become ready.
    pub(crate) fn finish(&mut self, node: usize) {
        for &dependent in &self.dependents[node] {
            self.waiting_on[dependent] -= 1;
            if self.waiting_on[dependent] == 0 && !self.blocked[dependent] {
                self.ready
                    .push((self.priority[dependent], Reverse(dependent)));
            }
        }
    }

    /// `node` failed: every node downstream of it can never run. Returns them, in index order.
    pub(crate) fn fail(&mut self, node: usize) -> Vec<usize> {
        let mut stack = self.dependents[node].clone();
        let mut newly_blocked = Vec::new();
        while let Some(next) = stack.pop() {
            if !self.blocked[next] {
                self.blocked[next] = true;
                newly_blocked.push(next);
                stack.extend(self.dependents[next].iter().copied());
            }
        }
        newly_blocked.sort_unstable();
        newly_blocked
    }
}

/// For each node, how many distinct nodes are downstream of it.
fn transitive_dependent_counts(dependents: &[Vec<usize>]) -> Vec<usize> {
    let n = dependents.len();
    (0..n)
        .map(|start| {
            let mut seen = vec![false; n];
            let mut stack = dependents[start].clone();
            let mut count = 0;
            while let Some(node) = stack.pop() {
                if !seen[node] {
                    seen[node] = true;
                    count += 1;
                    stack.extend(dependents[node].iter().copied());
                }
            }
            count
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::DependencyQueue;

    #[test]
    fn releases_in_dependency_order() {
        // 0 -> 1 -> 3, 0 -> 2 -> 3
        let mut queue = DependencyQueue::new(4, [(0, 1), (0, 2), (1, 3), (2, 3)]);
        assert_eq!(queue.pop(), Some(0));
        assert_eq!(queue.pop(), None);
        queue.finish(0);
        let mut next = [queue.pop().unwrap(), queue.pop().unwrap()];
        next.sort_unstable();
        assert_eq!(next, [1, 2]);
        queue.finish(1);
        assert_eq!(queue.pop(), None, "3 still waits on 2");
        queue.finish(2);
        assert_eq!(queue.pop(), Some(3));
    }

    #[test]
    fn failure_blocks_everything_downstream_only() {
        // 0 -> 1 -> 2, and 3 independent
        let mut queue = DependencyQueue::new(4, [(0, 1), (1, 2)]);
        assert_eq!(queue.pop(), Some(0), "0 unblocks more work than 3");
        assert_eq!(queue.fail(0), vec![1, 2]);
        assert_eq!(queue.pop(), Some(3));
        assert_eq!(queue.pop(), None);
    }
}
