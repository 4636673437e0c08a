package main

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// drawChart writes p99 latency against achieved throughput, one line per scenario (its fixed
// and search steps in order of throughput), with the p99 limit and the 2 ms goal, as SVG.
func drawChart(res Results, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("jetstate sidecar: p99 latency against throughput (AddItem, %d B, loopback)", res.PayloadBytes)
	p.X.Label.Text = "commands/s achieved"
	p.Y.Label.Text = "p99 latency, ms (log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = msTicks{}
	p.Add(plotter.NewGrid())
	// The legend goes in a column of its own, right of the plot, where no curve can hide it.
	legend := plot.NewLegend()
	legend.Top = true
	legend.Left = true
	maxX, minY, maxY := 0.0, goalP99, res.P99LimitMS
	for i, sr := range res.Scenarios {
		steps := slices.SortedFunc(slices.Values(sr.Steps), func(a, b Step) int { return cmp.Compare(a.Load.Achieved, b.Load.Achieved) })
		var pts plotter.XYs
		for _, st := range steps {
			if st.Load.P99 <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: st.Load.Achieved, Y: st.Load.P99})
			maxX, minY, maxY = max(maxX, st.Load.Achieved), min(minY, st.Load.P99), max(maxY, st.Load.P99)
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		if sr.Scenario.Durability == "always" {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		legend.Add(sr.Name, line, points)
	}
	if maxX == 0 {
		return fmt.Errorf("chart %s: no step with a latency to draw", path)
	}
	for _, ref := range []struct {
		ms    float64
		label string
		color color.Color
	}{
		{res.P99LimitMS, fmt.Sprintf("p99 limit %g ms", res.P99LimitMS), color.RGBA{R: 200, A: 255}},
		{goalP99, fmt.Sprintf("goal: p99 < %g ms at %d/s", goalP99, goalRate), color.RGBA{G: 150, A: 255}},
	} {
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: ref.ms}, {X: maxX * 1.05, Y: ref.ms}})
		if err != nil {
			return err
		}
		l.Color = ref.color
		l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		p.Add(l)
		legend.Add(ref.label, l)
	}
	// Room above and below the curves and the reference lines.
	p.X.Min, p.Y.Min, p.Y.Max = 0, minY/1.5, maxY*1.5

	const width, height, legendWidth = 11 * vg.Inch, 6 * vg.Inch, 2.3 * vg.Inch
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	// A white page under everything, the legend's column included (readable on dark pages).
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	legend.Draw(draw.Crop(dc, width-legendWidth+vg.Points(8), 0, 0, -vg.Points(24)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return f.Close()
}

// msTicks marks a log axis of milliseconds at 1, 2 and 5 of every power of ten.
type msTicks struct{}

func (msTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for exp := math.Floor(math.Log10(lo)); math.Pow10(int(exp)) <= hi; exp++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow10(int(exp))
			if v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ticks
}
