// Command berthctl inspects and explains berth, and runs the lab. Installed as
// kubectl-berth it is also a kubectl plugin.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlb/berth/version"
)

const usage = `usage: %s <command>

commands:
  version    print the version
`

func main() {
	name := filepath.Base(os.Args[0])
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, usage, name)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "version", "--version":
		fmt.Println(name, version.Version)
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown command %q\n"+usage, name, os.Args[1], name)
		os.Exit(2)
	}
}
