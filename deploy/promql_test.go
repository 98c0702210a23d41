package deploy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// A small PromQL parser, enough to check the expressions of deploy/observability: syntax
// (selectors, matchers, ranges, subqueries, offset, functions, aggregations, binary
// operators with their modifiers), the value types Prometheus checks at parse time
// (a range vector where a function wants one, set operators between vectors, bool between
// scalars) and the metric names an expression reads. github.com/prometheus/prometheus
// has the real parser, but requiring it raises go.mod's go line and x/sys, x/text and
// prometheus/common, and pulls its whole module graph into go.sum, for one test.

// pqType is a PromQL value type.
type pqType int

const (
	pqScalar pqType = iota
	pqVector
	pqMatrix
	pqString
)

func (t pqType) String() string {
	return [...]string{"scalar", "instant vector", "range vector", "string"}[t]
}

type pqTokenKind int

const (
	pqEOF pqTokenKind = iota
	pqIdent
	pqNumber
	pqDuration
	pqStr
	pqPunct // ( ) { } [ ] , : @
	pqOp    // + - * / % ^ == != <= >= < > = =~ !~
)

type pqToken struct {
	kind pqTokenKind
	text string
	pos  int
}

var (
	pqDurationRE = regexp.MustCompile(`^([0-9]+(ms|[smhdwy]))+`)
	pqNumberRE   = regexp.MustCompile(`^(0[xX][0-9a-fA-F]+|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?)`)
	pqLabelRE    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func pqLex(s string) ([]pqToken, error) {
	var toks []pqToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // a comment runs to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("offset %d: unterminated string", i)
			}
			text := s[i : j+1]
			if _, err := pqUnquote(text); err != nil {
				return nil, fmt.Errorf("offset %d: string %s: %v", i, text, err)
			}
			toks = append(toks, pqToken{pqStr, text, i})
			i = j + 1
		case c >= '0' && c <= '9' || c == '.':
			if m := pqDurationRE.FindString(s[i:]); m != "" && !pqIdentChar(s, i+len(m)) {
				toks = append(toks, pqToken{pqDuration, m, i})
				i += len(m)
				continue
			}
			m := pqNumberRE.FindString(s[i:])
			if m == "" || pqIdentChar(s, i+len(m)) {
				return nil, fmt.Errorf("offset %d: bad number", i)
			}
			toks = append(toks, pqToken{pqNumber, m, i})
			i += len(m)
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (pqIdentChar(s, j) || s[j] == ':') {
				j++
			}
			toks = append(toks, pqToken{pqIdent, s[i:j], i})
			i = j
		case strings.IndexByte("(){}[],:@", c) >= 0:
			toks = append(toks, pqToken{pqPunct, string(c), i})
			i++
		default:
			op := ""
			for _, o := range []string{"==", "!=", "<=", ">=", "=~", "!~", "+", "-", "*", "/", "%", "^", "<", ">", "="} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("offset %d: unexpected %q", i, c)
			}
			toks = append(toks, pqToken{pqOp, op, i})
			i += len(op)
		}
	}
	return append(toks, pqToken{pqEOF, "", len(s)}), nil
}

// pqUnquote returns the value of a PromQL string literal: Go's escapes in "…" and '…', none in `…`.
func pqUnquote(lit string) (string, error) {
	switch lit[0] {
	case '\'':
		inner := strings.ReplaceAll(lit[1:len(lit)-1], `\'`, `'`)
		return strconv.Unquote(`"` + strings.ReplaceAll(inner, `"`, `\"`) + `"`)
	case '`':
		return lit[1 : len(lit)-1], nil
	}
	return strconv.Unquote(lit)
}

func pqIdentChar(s string, i int) bool {
	if i >= len(s) {
		return false
	}
	c := s[i]
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// pqSignature is a function's argument and result types; variadic repeats the last
// argument, optional makes that many of the last ones optional.
type pqSignature struct {
	args     []pqType
	optional int
	variadic bool
	returns  pqType
}

// pqFunctions are PromQL's functions that a berth dashboard or alert may want.
var pqFunctions = func() map[string]pqSignature {
	m := map[string]pqSignature{
		"clamp":              {args: []pqType{pqVector, pqScalar, pqScalar}, returns: pqVector},
		"clamp_max":          {args: []pqType{pqVector, pqScalar}, returns: pqVector},
		"clamp_min":          {args: []pqType{pqVector, pqScalar}, returns: pqVector},
		"histogram_quantile": {args: []pqType{pqScalar, pqVector}, returns: pqVector},
		"label_join":         {args: []pqType{pqVector, pqString, pqString, pqString}, variadic: true, returns: pqVector},
		"label_replace":      {args: []pqType{pqVector, pqString, pqString, pqString, pqString}, returns: pqVector},
		"predict_linear":     {args: []pqType{pqMatrix, pqScalar}, returns: pqVector},
		"quantile_over_time": {args: []pqType{pqScalar, pqMatrix}, returns: pqVector},
		"round":              {args: []pqType{pqVector, pqScalar}, optional: 1, returns: pqVector},
		"scalar":             {args: []pqType{pqVector}, returns: pqScalar},
		"time":               {returns: pqScalar},
		"vector":             {args: []pqType{pqScalar}, returns: pqVector},
	}
	for _, f := range []string{"abs", "absent", "ceil", "exp", "floor", "ln", "log10", "log2", "sgn", "sort", "sort_desc",
		"sqrt", "timestamp"} {
		m[f] = pqSignature{args: []pqType{pqVector}, returns: pqVector}
	}
	for _, f := range []string{"absent_over_time", "avg_over_time", "changes", "count_over_time", "delta", "deriv",
		"idelta", "increase", "irate", "last_over_time", "max_over_time", "min_over_time", "present_over_time", "rate",
		"resets", "stddev_over_time", "sum_over_time"} {
		m[f] = pqSignature{args: []pqType{pqMatrix}, returns: pqVector}
	}
	return m
}()

// pqAggregations maps each aggregation operator to the type of its parameter, if it takes one.
var pqAggregations = map[string]*pqType{
	"sum": nil, "min": nil, "max": nil, "avg": nil, "group": nil, "stddev": nil, "stdvar": nil, "count": nil,
	"count_values": ptrTo(pqString), "bottomk": ptrTo(pqScalar), "topk": ptrTo(pqScalar), "quantile": ptrTo(pqScalar),
	"limitk": ptrTo(pqScalar), "limit_ratio": ptrTo(pqScalar),
}

func ptrTo[T any](v T) *T { return &v }

// pqPrecedence of the binary operators; ^ is right-associative.
var pqPrecedence = map[string]int{
	"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
	"+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6,
}

type pqParser struct {
	toks    []pqToken
	i       int
	metrics []string
}

// parsePromQL parses expr and returns its type and the metric names it selects, sorted.
func parsePromQL(expr string) (pqType, []string, error) {
	toks, err := pqLex(expr)
	if err != nil {
		return 0, nil, err
	}
	p := &pqParser{toks: toks}
	t, err := p.expr(0)
	if err != nil {
		return 0, nil, err
	}
	if tok := p.peek(); tok.kind != pqEOF {
		return 0, nil, p.errorf(tok, "unexpected %q after the expression", tok.text)
	}
	slices.Sort(p.metrics)
	return t, slices.Compact(p.metrics), nil
}

func (p *pqParser) peek() pqToken { return p.toks[p.i] }
func (p *pqParser) next() pqToken { t := p.toks[p.i]; p.i++; return t }

func (p *pqParser) errorf(t pqToken, format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", t.pos, fmt.Sprintf(format, args...))
}

func (p *pqParser) accept(kind pqTokenKind, text string) bool {
	if t := p.peek(); t.kind == kind && t.text == text {
		p.i++
		return true
	}
	return false
}

func (p *pqParser) expect(kind pqTokenKind, text string) error {
	if !p.accept(kind, text) {
		t := p.peek()
		return p.errorf(t, "want %q, found %q", text, t.text)
	}
	return nil
}

// binaryOp returns the binary operator at the current token, if any.
func (p *pqParser) binaryOp() (string, bool) {
	t := p.peek()
	if t.kind == pqOp || t.kind == pqIdent {
		if _, ok := pqPrecedence[t.text]; ok && t.text != "=" {
			return t.text, true
		}
	}
	return "", false
}

func (p *pqParser) expr(minPrec int) (pqType, error) {
	lhs, err := p.unary()
	if err != nil {
		return 0, err
	}
	for {
		op, ok := p.binaryOp()
		if !ok || pqPrecedence[op] < minPrec {
			return lhs, nil
		}
		opTok := p.next()
		isComparison := pqPrecedence[op] == 3
		isSet := op == "and" || op == "or" || op == "unless"
		returnBool := false
		if p.accept(pqIdent, "bool") {
			if !isComparison {
				return 0, p.errorf(opTok, "bool modifier on %s, which is no comparison", op)
			}
			returnBool = true
		}
		matching := false
		if p.accept(pqIdent, "on") || p.accept(pqIdent, "ignoring") {
			if err := p.labelList(); err != nil {
				return 0, err
			}
			matching = true
		}
		if p.accept(pqIdent, "group_left") || p.accept(pqIdent, "group_right") {
			if isSet {
				return 0, p.errorf(opTok, "grouping modifier on set operator %s", op)
			}
			if !matching {
				return 0, p.errorf(opTok, "group_left/group_right without on or ignoring")
			}
			if p.peek().text == "(" {
				if err := p.labelList(); err != nil {
					return 0, err
				}
			}
		}
		next := pqPrecedence[op] + 1
		if op == "^" {
			next = pqPrecedence[op]
		}
		rhs, err := p.expr(next)
		if err != nil {
			return 0, err
		}
		for _, t := range []pqType{lhs, rhs} {
			if t != pqScalar && t != pqVector {
				return 0, p.errorf(opTok, "operand of %s is a %s", op, t)
			}
		}
		switch {
		case isSet && (lhs != pqVector || rhs != pqVector):
			return 0, p.errorf(opTok, "set operator %s between %s and %s", op, lhs, rhs)
		case isComparison && lhs == pqScalar && rhs == pqScalar && !returnBool:
			return 0, p.errorf(opTok, "comparison between scalars needs bool")
		case matching && (lhs != pqVector || rhs != pqVector):
			return 0, p.errorf(opTok, "vector matching on a scalar")
		}
		if lhs == pqVector || rhs == pqVector {
			lhs = pqVector
		} else {
			lhs = pqScalar
		}
	}
}

func (p *pqParser) unary() (pqType, error) {
	if t := p.peek(); t.kind == pqOp && (t.text == "-" || t.text == "+") {
		p.next()
		v, err := p.unary()
		if err != nil {
			return 0, err
		}
		if v != pqScalar && v != pqVector {
			return 0, p.errorf(t, "unary %s on a %s", t.text, v)
		}
		return v, nil
	}
	return p.postfix()
}

// postfix parses a primary expression and its range, subquery, offset and @ modifiers.
func (p *pqParser) postfix() (pqType, error) {
	start := p.peek()
	t, isSelector, err := p.primary()
	if err != nil {
		return 0, err
	}
	if p.accept(pqPunct, "[") {
		if t != pqVector {
			return 0, p.errorf(start, "range or subquery of a %s", t)
		}
		if err := p.duration(); err != nil {
			return 0, err
		}
		if p.accept(pqPunct, ":") {
			if p.peek().kind == pqDuration {
				p.next()
			}
		} else if !isSelector {
			return 0, p.errorf(start, "a range needs a selector; a subquery needs [range:step]")
		}
		if err := p.expect(pqPunct, "]"); err != nil {
			return 0, err
		}
		t = pqMatrix
	}
	for {
		switch {
		case p.accept(pqIdent, "offset"):
			p.accept(pqOp, "-")
			if err := p.duration(); err != nil {
				return 0, err
			}
		case p.accept(pqPunct, "@"):
			if tok := p.next(); tok.kind != pqNumber && !(tok.kind == pqIdent && (tok.text == "start" || tok.text == "end")) {
				return 0, p.errorf(tok, "@ wants a timestamp, start() or end()")
			} else if tok.kind == pqIdent {
				if err := p.expect(pqPunct, "("); err != nil {
					return 0, err
				}
				if err := p.expect(pqPunct, ")"); err != nil {
					return 0, err
				}
			}
		default:
			return t, nil
		}
	}
}

func (p *pqParser) duration() error {
	if t := p.next(); t.kind != pqDuration {
		return p.errorf(t, "want a duration, found %q", t.text)
	}
	return nil
}

// primary parses a literal, a parenthesised expression, a function call, an aggregation
// or a vector selector; isSelector says it was the latter.
func (p *pqParser) primary() (t pqType, isSelector bool, err error) {
	tok := p.peek()
	switch tok.kind {
	case pqNumber:
		p.next()
		return pqScalar, false, nil
	case pqStr:
		p.next()
		return pqString, false, nil
	case pqPunct:
		switch tok.text {
		case "(":
			p.next()
			t, err := p.expr(0)
			if err != nil {
				return 0, false, err
			}
			return t, false, p.expect(pqPunct, ")")
		case "{":
			return pqVector, true, p.selector("")
		}
	case pqIdent:
		name := tok.text
		switch lower := strings.ToLower(name); {
		case lower == "inf" || lower == "nan":
			p.next()
			return pqScalar, false, nil
		case pqIsAggregation(name):
			p.next()
			return pqVector, false, p.aggregation(name)
		case p.toks[p.i+1].text == "(" && p.toks[p.i+1].kind == pqPunct:
			p.next()
			t, err := p.call(tok)
			return t, false, err
		default:
			if _, isOp := pqPrecedence[name]; isOp || slices.Contains([]string{"bool", "by", "without", "on", "ignoring",
				"group_left", "group_right", "offset"}, name) {
				return 0, false, p.errorf(tok, "unexpected keyword %q", name)
			}
			p.next()
			return pqVector, true, p.selector(name)
		}
	}
	if tok.kind == pqEOF {
		return 0, false, p.errorf(tok, "unexpected end of the expression")
	}
	return 0, false, p.errorf(tok, "unexpected %q", tok.text)
}

func pqIsAggregation(name string) bool { _, ok := pqAggregations[name]; return ok }

func (p *pqParser) aggregation(op string) error {
	grouping := func() error {
		if p.accept(pqIdent, "by") || p.accept(pqIdent, "without") {
			return p.labelList()
		}
		return nil
	}
	if err := grouping(); err != nil {
		return err
	}
	open := p.peek()
	if err := p.expect(pqPunct, "("); err != nil {
		return err
	}
	if param := pqAggregations[op]; param != nil {
		t, err := p.expr(0)
		if err != nil {
			return err
		}
		if t != *param {
			return p.errorf(open, "%s wants a %s parameter, found a %s", op, *param, t)
		}
		if err := p.expect(pqPunct, ","); err != nil {
			return err
		}
	}
	t, err := p.expr(0)
	if err != nil {
		return err
	}
	if t != pqVector {
		return p.errorf(open, "%s of a %s", op, t)
	}
	if err := p.expect(pqPunct, ")"); err != nil {
		return err
	}
	return grouping()
}

func (p *pqParser) call(fn pqToken) (pqType, error) {
	sig, ok := pqFunctions[fn.text]
	if !ok {
		return 0, p.errorf(fn, "unknown function %q", fn.text)
	}
	if err := p.expect(pqPunct, "("); err != nil {
		return 0, err
	}
	var args []pqType
	for p.peek().text != ")" || p.peek().kind != pqPunct {
		if len(args) > 0 {
			if err := p.expect(pqPunct, ","); err != nil {
				return 0, err
			}
		}
		t, err := p.expr(0)
		if err != nil {
			return 0, err
		}
		args = append(args, t)
	}
	p.next()
	minArgs, maxArgs := len(sig.args)-sig.optional, len(sig.args)
	if sig.variadic {
		maxArgs = 1 << 30
	}
	if len(args) < minArgs || len(args) > maxArgs {
		return 0, p.errorf(fn, "%s takes %d to %d arguments, found %d", fn.text, minArgs, min(maxArgs, 99), len(args))
	}
	for i, t := range args {
		want := sig.args[min(i, len(sig.args)-1)]
		if t != want {
			return 0, p.errorf(fn, "argument %d of %s is a %s, want a %s", i+1, fn.text, t, want)
		}
	}
	return sig.returns, nil
}

// selector parses the matchers of a vector selector and records its metric name.
func (p *pqParser) selector(name string) error {
	if name != "" {
		p.metrics = append(p.metrics, name)
	}
	if !p.accept(pqPunct, "{") {
		return nil
	}
	n := 0
	for !p.accept(pqPunct, "}") {
		if n > 0 {
			if err := p.expect(pqPunct, ","); err != nil {
				return err
			}
			if p.accept(pqPunct, "}") {
				break
			}
		}
		label := p.next()
		if label.kind != pqIdent || !pqLabelRE.MatchString(label.text) {
			return p.errorf(label, "want a label name, found %q", label.text)
		}
		op := p.next()
		if op.kind != pqOp || !slices.Contains([]string{"=", "!=", "=~", "!~"}, op.text) {
			return p.errorf(op, "want a label matcher, found %q", op.text)
		}
		value := p.next()
		if value.kind != pqStr {
			return p.errorf(value, "want a string, found %q", value.text)
		}
		if op.text == "=~" || op.text == "!~" {
			s, err := pqUnquote(value.text)
			if err == nil {
				_, err = regexp.Compile("^(?:" + s + ")$")
			}
			if err != nil {
				return p.errorf(value, "regexp %s: %v", value.text, err)
			}
		}
		if label.text == "__name__" && op.text == "=" {
			s, _ := pqUnquote(value.text)
			p.metrics = append(p.metrics, s)
		}
		n++
	}
	if name == "" && n == 0 {
		return fmt.Errorf("a selector needs a metric name or a matcher")
	}
	return nil
}

// labelList parses (label, …).
func (p *pqParser) labelList() error {
	if err := p.expect(pqPunct, "("); err != nil {
		return err
	}
	for i := 0; !p.accept(pqPunct, ")"); i++ {
		if i > 0 {
			if err := p.expect(pqPunct, ","); err != nil {
				return err
			}
			if p.accept(pqPunct, ")") {
				break
			}
		}
		if t := p.next(); t.kind != pqIdent || !pqLabelRE.MatchString(t.text) {
			return p.errorf(t, "want a label name, found %q", t.text)
		}
	}
	return nil
}
