// qmp-client: drives a QMP socket with DigitalOcean's go-qemu qmp package (Debian's
// golang-github-digitalocean-go-qemu-dev): a client csvmm did not write. Usage:
//   qmp-client SOCKET COMMAND...    each COMMAND is a JSON text; prints "OK <return>" or "ERR <error>" per command,
//                                   then "EVENT <name>" for every event received within a second of the last one.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: qmp-client SOCKET COMMAND...")
		os.Exit(2)
	}
	mon, err := qmp.NewSocketMonitor("unix", os.Args[1], 5*time.Second)
	if err != nil {
		fmt.Println("CONNECT-ERR", err)
		os.Exit(1)
	}
	if err := mon.Connect(); err != nil {
		fmt.Println("CONNECT-ERR", err)
		os.Exit(1)
	}
	fmt.Printf("VERSION %d.%d.%d %s\n", mon.Version.QEMU.Major, mon.Version.QEMU.Minor, mon.Version.QEMU.Micro, mon.Version.Package)
	events, _ := mon.Events(context.Background())
	got := make(chan string, 64)
	go func() {
		for e := range events {
			got <- e.Event
		}
	}()
	for _, cmd := range os.Args[2:] {
		raw, err := mon.Run([]byte(cmd))
		if err != nil {
			fmt.Println("ERR", err)
		} else {
			fmt.Println("OK", string(raw))
		}
	}
	for {
		select {
		case name := <-got:
			fmt.Println("EVENT", name)
		case <-time.After(time.Second):
			mon.Disconnect()
			return
		}
	}
}
