// gozip compresses stdin to stdout as gzip with the encoders image builders
// use, so ferry-recipe's tests and benches can compare against the real thing.
//
//	gozip -family go    -level 6            # Go's compress/gzip (Docker, BuildKit, containerd)
//	gozip -family pgzip -level -1 -block 1048576   # klauspost/pgzip (containers/image, umoci)
//
// Built with Debian's golang-go and golang-github-klauspost-pgzip-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o gozip main.go
package main

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/pgzip"
)

func main() {
	family := flag.String("family", "go", "go or pgzip")
	level := flag.Int("level", gzip.DefaultCompression, "compression level (-1 = default)")
	block := flag.Int("block", 1<<20, "pgzip block size")
	blocks := flag.Int("blocks", 4, "pgzip blocks in flight (does not change the output)")
	chunk := flag.Int("write", 32<<10, "bytes per Write call (does not change the output)")
	flag.Parse()

	out := bufio.NewWriter(os.Stdout)
	var w io.WriteCloser
	switch *family {
	case "go":
		gw, err := gzip.NewWriterLevel(out, *level)
		check(err)
		w = gw
	case "pgzip":
		pw, err := pgzip.NewWriterLevel(out, *level)
		check(err)
		check(pw.SetConcurrency(*block, *blocks))
		w = pw
	default:
		check(fmt.Errorf("unknown family %q", *family))
	}
	buf := make([]byte, *chunk)
	in := bufio.NewReader(os.Stdin)
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			_, werr := w.Write(buf[:n])
			check(werr)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		check(err)
	}
	check(w.Close())
	check(out.Flush())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "gozip:", err)
		os.Exit(1)
	}
}
