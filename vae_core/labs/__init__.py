"""One module per lab: the study notes' open questions measured on the user's own model
(``gradients``, ``marginal``, ``beta``, ``disentangle``). Pure computation on loaded models
and run directories; the pages draw the results."""
