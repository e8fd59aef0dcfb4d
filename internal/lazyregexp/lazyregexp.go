// Package lazyregexp is a regular expression compiled on its first use
// rather than when its package is initialised: every pyro process, the CLI
// starting for one command included, initialises every package it links,
// and a pattern such as `[a-z]{0,63}` takes a noticeable share of that
// start to compile.
package lazyregexp

import (
	"regexp"
	"sync"
)

// Regexp is a regexp.Regexp compiled when first used; it is safe for
// concurrent use.
type Regexp struct {
	expr string
	re   func() *regexp.Regexp
}

// New returns expr, to be compiled (with regexp.MustCompile) on first use.
func New(expr string) *Regexp {
	return &Regexp{expr: expr, re: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })}
}

// MatchString is regexp.Regexp.MatchString.
func (r *Regexp) MatchString(s string) bool { return r.re().MatchString(s) }

// FindString is regexp.Regexp.FindString.
func (r *Regexp) FindString(s string) string { return r.re().FindString(s) }

// FindStringSubmatch is regexp.Regexp.FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.re().FindStringSubmatch(s) }

// String is the source text.
func (r *Regexp) String() string { return r.expr }
