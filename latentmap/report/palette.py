"""The colour-blind-safe colours and markers of the benchmark figures (Okabe & Ito's palette).

Series are told apart by colour and by marker, so a figure also reads in grey.
"""

# blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
MARKERS = ("o", "s", "D", "^", "v", "P", "X")
