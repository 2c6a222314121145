package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestGracefulShutdown runs the server on a free port, opens a websocket,
// cancels the run context (what SIGINT/SIGTERM do) and checks that the
// socket is closed with 1001 and run returns cleanly.
func TestGracefulShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, func(a string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}

	res, err := http.Post("http://"+addr+"/auth/signup", "application/json", strings.NewReader(`{"email":"a@x","password":"p"}`))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Data struct {
			AccessToken string `json:"accessToken"`
		} `json:"data"`
	}
	err = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("signup: %d %v", res.StatusCode, err)
	}

	d := websocket.Dialer{Subprotocols: []string{"pigeon.v1"}}
	c, _, err := d.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WriteJSON(map[string]any{"type": "init", "id": "i", "payload": map[string]any{"headers": map[string]string{"Authorization": "Bearer " + body.Data.AccessToken}}}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second)) // safety net only
	var ack struct{ Type string }
	if err := c.ReadJSON(&ack); err != nil || ack.Type != "init_ack" {
		t.Fatalf("init: %+v %v", ack, err)
	}

	cancel()
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("socket ended with %v, want close 1001", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	if err := run(context.Background(), []string{"-nope"}, nil); err == nil {
		t.Fatal("no error for an unknown flag")
	}
}
