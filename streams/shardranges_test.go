package streams

import "testing"

func TestShardRanges(t *testing.T) {
	for _, tc := range []struct {
		shards []int
		sep    string
		want   string
	}{
		{nil, ", ", ""},
		{[]int{5}, ", ", "5"},
		{[]int{0, 1, 2, 3, 7, 9, 10, 11, 12}, ", ", "0-3, 7, 9-12"},
		{[]int{0, 1, 2, 3, 7, 9, 10, 11, 12}, ",", "0-3,7,9-12"},
		{[]int{1, 3, 5}, ",", "1,3,5"},
	} {
		if got := ShardRanges(tc.shards, tc.sep); got != tc.want {
			t.Errorf("ShardRanges(%v, %q) = %q, want %q", tc.shards, tc.sep, got, tc.want)
		}
	}
}
