"""One module per part of the visit: check-in, the visit itself (home, answers, finish, events), vitals, cases."""
