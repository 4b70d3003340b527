// Package docs holds no code: it is the home of the design
// (design.md) and the operations guide (operations.md), and of the test
// that keeps the repository's documents standing on their own.
package docs
