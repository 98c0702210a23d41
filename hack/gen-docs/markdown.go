package main

import (
	"strings"
)

// table writes a GitHub Markdown table. Cells are Markdown already (see prose and code);
// table keeps each on one line and escapes the pipes that would end it.
func table(b *strings.Builder, header []string, rows [][]string) {
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			c = strings.ReplaceAll(strings.Join(strings.Fields(c), " "), "|", `\|`)
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString(strings.Repeat("|---", len(header)) + "|\n")
	for _, r := range rows {
		line(r)
	}
	b.WriteString("\n")
}

// prose makes plain text from a description or a doc comment safe for Markdown: one
// paragraph; outside `code`, "<" escaped so that GitHub does not take it for an HTML tag,
// and "*" and "_" so that they do not turn into emphasis.
func prose(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	var b strings.Builder
	inCode := false
	for _, r := range s {
		switch {
		case r == '`':
			inCode = !inCode
		case r == '<' && !inCode:
			b.WriteString("&lt;")
			continue
		case (r == '*' || r == '_') && !inCode:
			b.WriteRune('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// code is s as a Markdown code span, whatever backquotes it holds.
func code(s string) string {
	if s == "" {
		return ""
	}
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// codeBlock writes s as a fenced code block.
func codeBlock(b *strings.Builder, s string) {
	fence := "```"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	b.WriteString(fence + "text\n" + strings.TrimRight(s, "\n") + "\n" + fence + "\n\n")
}
