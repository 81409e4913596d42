//go:build linux

package cli

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// openTerminal turns echo off on in when it is a terminal and returns it with a function that
// restores the terminal; ok is false when in is not a terminal. Tests replace it.
var openTerminal = func(in io.Reader) (r io.Reader, restore func(), ok bool) {
	f, isFile := in.(*os.File)
	if !isFile {
		return nil, nil, false
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, nil, false // not a terminal
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG // line by line, Ctrl-C still interrupts
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, nil, false
	}
	return f, func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, true
}
