// A progress bar on stderr across weighted phases (stdout stays for the table); on a non-TTY
// stderr it prints one line per phase instead of redrawing.

export interface PhaseSpec {
  name: string;
  /** rough expected seconds: the bar's share of this phase */
  weight: number;
}

export class Progress {
  private idx = -1;
  private frac = 0;
  private label = '';
  private lastDraw = 0;
  private readonly total: number;
  private readonly t0 = Date.now();
  private phaseStart = Date.now();
  /** Wall time each finished phase took, in ms. */
  readonly phaseMs: Record<string, number> = {};

  constructor(
    private readonly phases: readonly PhaseSpec[],
    private readonly out: NodeJS.WriteStream | undefined = process.stderr,
  ) {
    this.total = phases.reduce((a, p) => a + p.weight, 0) || 1;
  }

  /** Starts the named phase. */
  phase(name: string): void {
    this.closePhase();
    const i = this.phases.findIndex((p) => p.name === name);
    this.idx = i >= 0 ? i : this.idx;
    this.frac = 0;
    this.label = '';
    if (this.out && !this.out.isTTY) this.out.write(`bench: ${name}…\n`);
    this.draw(true);
  }

  /** Progress within the current phase (0..1) and what is happening. */
  update(fraction: number, label = this.label): void {
    this.frac = Math.max(0, Math.min(1, fraction));
    this.label = label;
    this.draw(false);
  }

  /** Ends the last phase and clears the bar. */
  done(): void {
    this.closePhase();
    this.idx = -1;
    if (this.out?.isTTY) this.out.write('\r\x1b[2K');
  }

  private closePhase(): void {
    const now = Date.now();
    if (this.idx >= 0) this.phaseMs[this.phases[this.idx]!.name] = now - this.phaseStart;
    this.phaseStart = now;
  }

  private draw(force: boolean): void {
    if (!this.out?.isTTY) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const before = this.phases.slice(0, Math.max(0, this.idx)).reduce((a, p) => a + p.weight, 0);
    const cur = this.idx >= 0 ? this.phases[this.idx]!.weight * this.frac : 0;
    const f = Math.min(1, (before + cur) / this.total);
    const width = 28;
    const full = Math.round(f * width);
    const name = this.idx >= 0 ? this.phases[this.idx]!.name : '';
    const secs = Math.round((now - this.t0) / 1000);
    const text = `[${'█'.repeat(full)}${'░'.repeat(width - full)}] ${String(Math.round(f * 100)).padStart(3)}% ${secs}s ${name}${this.label ? `: ${this.label}` : ''}`;
    const cols = this.out.columns ?? 100;
    this.out.write(`\r\x1b[2K${text.slice(0, cols - 1)}`);
  }
}
