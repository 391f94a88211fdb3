package main

import (
	"errors"
	"strconv"
)

// exitError is an error that asks for a particular exit code. main uses exit code 1 for
// every other error. `fleetctl diff` follows diff(1) and `kubectl diff`: 1 means "there are
// differences", so its failures exit with 2 and cannot be mistaken for an answer.
type exitError struct {
	code int
	// err is printed as "error: ..." unless it is nil: "there are differences" has already
	// said everything it has to say on stdout.
	err error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return "exit status " + strconv.Itoa(e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// withExitCode returns err asking for code, keeping an exit code err already asks for.
func withExitCode(code int, err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: code, err: err}
}

// exitCode is the process exit code for the error a command returned, and whether the
// error has a message to print.
func exitCode(err error) (code int, printable bool) {
	if err == nil {
		return 0, false
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, ee.err != nil
	}
	return 1, true
}
