package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/edgetier/edgetier/internal/board"
)

// boards holds one board per pool name. A reload provisions the new config
// (acquiring the board again) before cleaning up the old one, so pollers
// and history carry over.
var boards = caddy.NewUsagePool()

// acquireBoard returns the board of pool, starting it if no config holds
// it yet; every acquire is matched by releaseBoard.
func acquireBoard(pool string, logger *zap.Logger) (*board.Board, error) {
	val, _, err := boards.LoadOrNew(pool, func() (caddy.Destructor, error) {
		return board.New(pool, logger), nil
	})
	if err != nil {
		return nil, fmt.Errorf("acquiring board %q: %w", pool, err)
	}
	return val.(*board.Board), nil
}

// releaseBoard lets go of pool's board; the last holder stops it.
func releaseBoard(pool string) error {
	_, err := boards.Delete(pool)
	return err
}

func recoverAndLog(logger *zap.Logger, what string) {
	if err := recover(); err != nil {
		logger.Error(what+" panicked", zap.Any("panic", err), zap.Stack("stack"))
	}
}
