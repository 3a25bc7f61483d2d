"""How good is a prefix (torch-free): ranking metrics (`metrics`), the paired comparison (`paired`), the
label-free estimate of what a prefix keeps (`kept`) and the dim it recommends (`recommend`)."""
