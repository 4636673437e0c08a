package readmodel

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

const schema = `
CREATE TABLE IF NOT EXISTS processed_events (
	source       TEXT NOT NULL,
	id           TEXT NOT NULL,
	type         TEXT NOT NULL,
	processed_at TEXT NOT NULL,
	PRIMARY KEY (source, id)
);
CREATE TABLE IF NOT EXISTS cart_items (
	cart_id    TEXT NOT NULL,
	product_id TEXT NOT NULL,
	name       TEXT NOT NULL,
	quantity   INTEGER NOT NULL,
	PRIMARY KEY (cart_id, product_id)
);
CREATE TABLE IF NOT EXISTS product_stats (
	product_id     TEXT PRIMARY KEY,
	name           TEXT NOT NULL,
	times_added    INTEGER NOT NULL,
	quantity_added INTEGER NOT NULL
);
`

// Store is the view in SQLite. It is safe for concurrent use: writes are
// serialized on one connection.
type Store struct {
	db *sql.DB
}

// Open opens (creating if needed) the database at path.
func Open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	// A file: URI: SQLite decodes %HH in the path, so a path with '?', '#'
	// or '%' is escaped rather than cut short.
	escaped := strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+escaped+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// SQLite has one writer; one connection keeps transactions from
	// waiting on each other's locks.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: schema: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// EventRef identifies an event for deduplication: CloudEvents' source and
// id are unique together.
type EventRef struct {
	Source, ID, Type string
}

// ItemAdded adds quantity of a product to a cart (the product keeps the
// name it was first added with) and to the product's totals.
type ItemAdded struct {
	CartID, ProductID, Name string
	Quantity                int32
}

// ItemRemoved removes a product from a cart.
type ItemRemoved struct {
	CartID, ProductID string
}

// Apply records ev and applies change (an ItemAdded or an ItemRemoved) in
// one transaction. It reports false, changing nothing, if ev was applied
// before.
func (s *Store) Apply(ctx context.Context, ev EventRef, change any) (applied bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("apply %s: %w", ev.ID, err)
	}
	defer func() {
		if !applied || err != nil {
			_ = tx.Rollback()
		}
	}()
	res, err := tx.ExecContext(ctx, `INSERT INTO processed_events (source, id, type, processed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, ev.Source, ev.ID, ev.Type, time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return false, fmt.Errorf("apply %s: record: %w", ev.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err // a duplicate
	}
	switch c := change.(type) {
	case ItemAdded:
		_, err = tx.ExecContext(ctx, `INSERT INTO cart_items (cart_id, product_id, name, quantity) VALUES (?, ?, ?, ?)
			ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = quantity + excluded.quantity`,
			c.CartID, c.ProductID, c.Name, c.Quantity)
		if err == nil {
			_, err = tx.ExecContext(ctx, `INSERT INTO product_stats (product_id, name, times_added, quantity_added) VALUES (?, ?, 1, ?)
				ON CONFLICT (product_id) DO UPDATE SET times_added = times_added + 1, quantity_added = quantity_added + excluded.quantity_added`,
				c.ProductID, c.Name, c.Quantity)
		}
	case ItemRemoved:
		_, err = tx.ExecContext(ctx, `DELETE FROM cart_items WHERE cart_id = ? AND product_id = ?`, c.CartID, c.ProductID)
	default:
		err = fmt.Errorf("unknown change %T", change)
	}
	if err != nil {
		return false, fmt.Errorf("apply %s: %w", ev.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("apply %s: commit: %w", ev.ID, err)
	}
	return true, nil
}

// Reset empties the view and forgets every event, for a rebuild.
func (s *Store) Reset(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	defer tx.Rollback()
	for _, table := range []string{"processed_events", "cart_items", "product_stats"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table); err != nil {
			return fmt.Errorf("reset %s: %w", table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

// Item is one product in a cart.
type Item struct {
	ProductID string `json:"productId"`
	Name      string `json:"name"`
	Quantity  int64  `json:"quantity"`
}

// Cart is one cart's items, in the order they were first added.
type Cart struct {
	CartID string `json:"cartId"`
	Items  []Item `json:"items"`
}

// CartSummary is one line of the list of carts.
type CartSummary struct {
	CartID   string `json:"cartId"`
	Lines    int64  `json:"lines"`
	Quantity int64  `json:"quantity"`
}

// ProductStat is how often and how much a product was added to carts
// (removals do not count against it).
type ProductStat struct {
	ProductID     string `json:"productId"`
	Name          string `json:"name"`
	TimesAdded    int64  `json:"timesAdded"`
	QuantityAdded int64  `json:"quantityAdded"`
}

// Stats counts what the view holds.
type Stats struct {
	EventsProcessed int64 `json:"eventsProcessed"`
	Carts           int64 `json:"carts"`
	Products        int64 `json:"products"`
}

// Cart returns a cart's items; an unknown cart has none.
func (s *Store) Cart(ctx context.Context, id string) (Cart, error) {
	c := Cart{CartID: id, Items: []Item{}}
	rows, err := s.db.QueryContext(ctx, `SELECT product_id, name, quantity FROM cart_items WHERE cart_id = ? ORDER BY rowid`, id)
	if err != nil {
		return c, fmt.Errorf("cart %s: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.ProductID, &it.Name, &it.Quantity); err != nil {
			return c, fmt.Errorf("cart %s: %w", id, err)
		}
		c.Items = append(c.Items, it)
	}
	return c, rows.Err()
}

// Carts lists the carts holding items, by id.
func (s *Store) Carts(ctx context.Context) ([]CartSummary, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT cart_id, count(*), sum(quantity) FROM cart_items GROUP BY cart_id ORDER BY cart_id`)
	if err != nil {
		return nil, fmt.Errorf("carts: %w", err)
	}
	defer rows.Close()
	out := []CartSummary{}
	for rows.Next() {
		var c CartSummary
		if err := rows.Scan(&c.CartID, &c.Lines, &c.Quantity); err != nil {
			return nil, fmt.Errorf("carts: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// TopProducts returns the limit products added in the largest quantities
// (ties by id).
func (s *Store) TopProducts(ctx context.Context, limit int) ([]ProductStat, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT product_id, name, times_added, quantity_added FROM product_stats
		ORDER BY quantity_added DESC, product_id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("top products: %w", err)
	}
	defer rows.Close()
	out := []ProductStat{}
	for rows.Next() {
		var p ProductStat
		if err := rows.Scan(&p.ProductID, &p.Name, &p.TimesAdded, &p.QuantityAdded); err != nil {
			return nil, fmt.Errorf("top products: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Stats counts the events processed, the carts holding items and the
// products ever added.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM processed_events),
		(SELECT count(DISTINCT cart_id) FROM cart_items), (SELECT count(*) FROM product_stats)`).
		Scan(&st.EventsProcessed, &st.Carts, &st.Products)
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}
