// Go net/http under `corral run`, with github.com/coreos/go-systemd: the listener from
// activation.Listeners() (LISTEN_FDS, checked against LISTEN_PID), READY=1 by daemon.SdNotify once
// it serves, and a graceful stop on SIGTERM (exit 0). GET /who -> {"pid", "peer", "peer_port"}.
// See docs/src/recipes/go.md.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	listeners, err := activation.Listeners()
	if err != nil {
		log.Fatalf("activation: %v", err)
	}
	if len(listeners) == 0 {
		log.Fatal("no socket from LISTEN_FDS: run me under corral run (or systemd socket activation)")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) {
		host, port, _ := net.SplitHostPort(r.RemoteAddr)
		p, _ := strconv.Atoi(port)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"pid": os.Getpid(), "peer": host, "peer_port": p})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %d\n", os.Getpid())
	})
	srv := &http.Server{Handler: mux}

	done := make(chan struct{})
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		daemon.SdNotify(false, daemon.SdNotifyStopping)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // stop accepting, close idle connections, wait for requests in flight
		close(done)
	}()

	for _, l := range listeners[1:] {
		go srv.Serve(l)
	}
	// The socket is already listening: connections queue from now on, so READY=1 can go first.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Printf("sd_notify: %v", err)
	}
	if err := srv.Serve(listeners[0]); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-done
}
