"""The torch side of methods whose registry module must stay light: VCD's noised branch, DoLa's early exits, and
the score processor both run inside stock `generate`. Imported only when a batch is answered."""
