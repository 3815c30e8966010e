"""The Gradio app (the layer above the leaderboard and the runner service): Leaderboard, Compare, Demo,
Submit and About tabs. `atzoo.app.app` builds and serves it; `demo` and `plots` hold its pure logic."""
